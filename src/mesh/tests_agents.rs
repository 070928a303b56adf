//! Validation of agent-to-agent delivery: `inbound` on agents, `agent = "NAME"` services.

use std::path::Path;

use super::tests::{MINIMAL, assert_mistake, line_of, mistakes};
use super::validate;

const BOB: &str = r#"
[[agent]]
name = "bob"
inbound = { http = "127.0.0.1:9100", tcp = "127.0.0.1:9200", allow = ["alice", "ops-*"] }

[[service]]
name = "bob"
agent = "bob"
"#;

#[test]
fn an_agent_service_and_its_inbound_are_read() {
    let source = format!("{MINIMAL}{BOB}");
    let mesh = validate::parse(&source, Path::new("/nonexistent")).unwrap();
    let bob = mesh.agents.iter().find(|a| a.name == "bob").unwrap();
    let inbound = bob.inbound.as_ref().unwrap();
    assert_eq!(inbound.http.unwrap().to_string(), "127.0.0.1:9100");
    assert_eq!(inbound.tcp.unwrap().to_string(), "127.0.0.1:9200");
    assert_eq!(inbound.allow, ["alice", "ops-*"]);
    assert_eq!(inbound.max_streams, 256);
    assert!(bob.listeners.is_empty(), "an agent may only receive");
    let service = mesh.services.iter().find(|s| s.name == "bob").unwrap();
    assert_eq!(service.agent.as_deref(), Some("bob"));
    assert!(service.upstreams.is_empty());
}

#[test]
fn agent_services_must_name_an_agent_that_takes_deliveries_over_quic() {
    let source = format!(
        r#"{MINIMAL}
[[agent]]
name = "carol"
transport = "h2"
inbound = {{ http = "127.0.0.1:9300", allow = ["alice"] }}

[[service]]
name = "to-nobody"
agent = "bobb"

[[service]]
name = "to-alice"
agent = "alice"

[[service]]
name = "to-carol"
agent = "carol"

[[service]]
name = "both"
agent = "alice"
upstreams = ["http://127.0.0.1:9000"]

[[service]]
name = "neither"
"#
    );
    let found = mistakes(&source);
    assert_mistake(
        &found,
        line_of(&source, r#"agent = "bobb""#),
        "service `to-nobody` is agent `bobb`, but there is no [[agent]] named `bobb`",
        "",
    );
    assert_mistake(
        &found,
        line_of(&source, r#"agent = "alice""#),
        "service `to-alice` is agent `alice`, which takes no deliveries",
        "give agent `alice` an inbound",
    );
    assert_mistake(
        &found,
        line_of(&source, r#"agent = "carol""#),
        "whose sidecar uses the h2 transport",
        "only QUIC allows",
    );
    assert_mistake(
        &found,
        line_of(&source, r#"transport = "h2""#),
        "agent `carol` takes deliveries (inbound) but uses the h2 transport",
        "use transport = \"quic\"",
    );
    assert_mistake(
        &found,
        line_of(&source, r#"name = "both""#) + 2,
        "service `both` is agent `alice` and also has upstreams",
        "either an agent of the mesh",
    );
    assert_mistake(
        &found,
        line_of(&source, r#"name = "neither""#),
        "service `neither` has neither upstreams nor an agent",
        "agent = \"NAME\"",
    );
}

#[test]
fn inbound_addresses_and_allow_lists_are_checked() {
    let source = format!(
        r#"{MINIMAL}
[[agent]]
name = "bob"
inbound = {{ http = "10.0.0.5:9100", allow = [] }}

[[agent]]
name = "dave"
inbound = {{ allow = ["alice"], max_streams = 0 }}
"#
    );
    let found = mistakes(&source);
    let bob = line_of(&source, "10.0.0.5:9100");
    assert_mistake(&found, bob, "is not a loopback address", "127.0.0.1");
    assert_mistake(
        &found,
        bob,
        "agent `bob` takes deliveries but allows nobody",
        "allow = [\"alice\"]",
    );
    let dave = line_of(&source, "max_streams = 0");
    assert_mistake(
        &found,
        dave,
        "the inbound of agent `dave` has nowhere to deliver",
        "tcp = ",
    );
    assert_mistake(
        &found,
        dave,
        "max_streams = 0 is out of range",
        "1 to 10000",
    );
}

#[test]
fn listeners_must_carry_what_the_agents_inbound_takes() {
    let source = format!(
        r#"{MINIMAL}
[[agent]]
name = "carol"
listeners = [
  {{ listen = "127.0.0.1:15101", service = "bob-http", protocol = "tcp" }},
  {{ listen = "127.0.0.1:15102", service = "bob-http" }},
]

[[agent]]
name = "bob"
inbound = {{ http = "127.0.0.1:9100", allow = ["carol"] }}

[[service]]
name = "bob-http"
agent = "bob"
"#
    );
    let found = mistakes(&source);
    assert_mistake(
        &found,
        line_of(&source, "127.0.0.1:15101"),
        "listener 127.0.0.1:15101 of agent `carol` carries raw TCP to agent `bob`, whose inbound takes no raw TCP",
        "add `tcp = ",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}
