use aimux_wire::{Intent, Protocol};

use super::*;

fn route(name: Option<&str>, to: &str) -> RouteConfig {
    RouteConfig {
        name: name.map(str::to_owned),
        to: to.to_owned(),
        ..RouteConfig::default()
    }
}

fn with_intent(name: &str, intent: &str, to: &str) -> RouteConfig {
    RouteConfig {
        intent: Some(intent.parse().unwrap()),
        ..route(Some(name), to)
    }
}

fn facts<'a>(dest: &'a str, intent: Option<&'a Intent>, path: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        destination: dest,
        intent,
        method: "POST",
        path,
    }
}

fn known(name: &str) -> bool {
    ["tools", "echo", "files"].contains(&name)
}

fn service_of(r: Resolution<'_>) -> (&str, Option<String>) {
    match r {
        Resolution::Routed(r) => (r.service, r.route.map(|l| l.to_string())),
        other => panic!("not routed: {other:?}"),
    }
}

#[test]
fn without_routes_requests_go_to_their_destination() {
    let r = Router::default();
    let (service, route) = service_of(r.resolve(&facts("tools", None, "/mcp"), known));
    assert_eq!((service, route), ("tools", None));
    assert_eq!(
        r.resolve(&facts("nowhere", None, "/"), known),
        Resolution::NoRoute
    );
}

#[test]
fn the_most_specific_rule_wins_whatever_the_file_order() {
    let routes = vec![
        with_intent("any-call", "mcp tools/call", "generic"),
        with_intent("search", "mcp tools/call search_*", "search"),
        with_intent("search-web", "mcp tools/call search_web", "web"),
        with_intent("search-web-x", "mcp tools/call search_web_*", "webx"),
    ];
    assert!(conflicts(&routes).is_empty());
    let r = Router::new(routes);
    let cases = [
        ("search_web", "web"),
        ("search_web_images", "webx"),
        ("search_news", "search"),
        ("get_weather", "generic"),
    ];
    for (tool, expected) in cases {
        let i = Intent::new(Protocol::Mcp, "tools/call", tool);
        let (service, _) = service_of(r.resolve(&facts("tools", Some(&i), "/mcp"), known));
        assert_eq!(service, expected, "{tool}");
    }
}

#[test]
fn conditions_on_method_path_and_destination() {
    let by_path = RouteConfig {
        service: Some("tools".into()),
        path: Some(Glob::new("/files/*")),
        method: Some(Glob::new("GET")),
        ..route(None, "files")
    };
    let r = Router::new(vec![by_path]);
    let get = RequestFacts {
        method: "GET",
        ..facts("tools", None, "/files/a.txt?x=1")
    };
    let (service, label) = service_of(r.resolve(&get, known));
    assert_eq!((service, label.as_deref()), ("files", Some("#1")));
    // POST fails the method condition: the destination itself takes it.
    let (service, _) = service_of(r.resolve(&facts("tools", None, "/files/a"), known));
    assert_eq!(service, "tools");
}

#[test]
fn requests_without_intent_match_only_open_patterns() {
    let routes = vec![
        with_intent("open", "*", "open"),
        with_intent("narrow", "mcp", "narrow"),
    ];
    assert!(conflicts(&routes).is_empty());
    let r = Router::new(routes);
    assert_eq!(
        service_of(r.resolve(&facts("x", None, "/"), known)).0,
        "open"
    );
    let mcp = Intent::new(Protocol::Mcp, "", "");
    assert_eq!(
        service_of(r.resolve(&facts("x", Some(&mcp), "/"), known)).0,
        "narrow"
    );
}

#[test]
fn different_fields_of_equal_weight_conflict() {
    let by_protocol = with_intent("narrow", "mcp", "narrow");
    let by_service = RouteConfig {
        service: Some("x".into()),
        ..route(Some("by-service"), "other")
    };
    assert_eq!(
        conflicts(&[by_protocol, by_service]),
        vec![RouteConflict {
            first: 0,
            second: 1
        }]
    );
}

#[test]
fn equally_specific_overlapping_rules_conflict() {
    // Equal literal lengths, so equally specific: `s*`/`*b` overlap (`sb`), `*b`/`f*` too
    // (`fb`), `s*`/`f*` cannot, and another protocol keeps `d` apart.
    let a = with_intent("a", "mcp tools/call s*", "x");
    let b = with_intent("b", "mcp tools/call *b", "y");
    let c = with_intent("c", "mcp tools/call f*", "z");
    let d = with_intent("d", "a2a tools/call s*", "w");
    let found = conflicts(&[a, b, c, d]);
    assert_eq!(
        found,
        vec![
            RouteConflict {
                first: 0,
                second: 1
            },
            RouteConflict {
                first: 1,
                second: 2
            },
        ]
    );
    // Semantic routes never conflict.
    let s1 = RouteConfig {
        examples: vec!["x".into()],
        ..route(Some("s1"), "x")
    };
    let s2 = RouteConfig {
        examples: vec!["y".into()],
        ..route(Some("s2"), "y")
    };
    assert!(conflicts(&[s1, s2]).is_empty());
}

#[test]
fn semantic_candidates_when_no_rule_and_no_service() {
    let rule = with_intent("echo", "mcp tools/call echo_*", "echo");
    let finance = RouteConfig {
        examples: vec!["forecast revenue".into()],
        ..route(Some("finance"), "tools")
    };
    let mcp_only = RouteConfig {
        examples: vec!["reset a password".into()],
        intent: Some("mcp".parse().unwrap()),
        ..route(Some("accounts"), "files")
    };
    let r = Router::new(vec![rule, finance, mcp_only]);
    let call = Intent::new(Protocol::Mcp, "tools/call", "forecast_q3");
    assert_eq!(
        r.resolve(&facts("assistant", Some(&call), "/mcp"), known),
        Resolution::Semantic(vec![1, 2])
    );
    let chat = Intent::new(Protocol::OpenAi, "chat", "gpt-4o");
    assert_eq!(
        r.resolve(&facts("assistant", Some(&chat), "/v1"), known),
        Resolution::Semantic(vec![1])
    );
    // An addressed service is not second-guessed.
    assert_eq!(
        service_of(r.resolve(&facts("tools", Some(&call), "/"), known)).0,
        "tools"
    );
    assert_eq!(r.routed(1).route.unwrap().to_string(), "`finance`");
}

#[test]
fn longer_literal_text_breaks_ties_between_globs() {
    let a = with_intent("a", "mcp tools/call search_*", "x");
    let b = with_intent("b", "mcp tools/call *_web", "y");
    assert!(conflicts(&[a.clone(), b.clone()]).is_empty());
    let r = Router::new(vec![b, a]);
    let i = Intent::new(Protocol::Mcp, "tools/call", "search_web");
    assert_eq!(
        service_of(r.resolve(&facts("t", Some(&i), "/"), known)).0,
        "x"
    );
}

#[test]
fn specificity_orders_exact_then_globs_then_literals() {
    let s = |intent: &str| Specificity::of(&with_intent("r", intent, "x"));
    assert!(s("mcp tools/call search_web") > s("mcp tools/call search_*"));
    assert!(s("mcp tools/call search_web_*") > s("mcp tools/call search_*"));
    assert!(s("mcp tools/call search_*") > s("mcp tools/call"));
    assert!(s("mcp tools/call") > s("mcp"));
    assert_eq!(s("mcp * *"), s("mcp"));
}

#[test]
fn strips_queries_only() {
    assert_eq!(path_without_query("/a/b?c=d?e"), "/a/b");
    assert_eq!(path_without_query("/a"), "/a");
    assert_eq!(path_without_query("*"), "*");
}
