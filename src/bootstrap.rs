//! Development certificates for `aimux up`: when the mesh file says `bootstrap_certs = true`,
//! create the CA and every missing certificate at its default path, and say where.

use std::net::IpAddr;

use aimux_certs::time::OffsetDateTime;
use aimux_certs::{Authority, InitParams, IssueParams, TrustDomain, Validity, WorkloadName};
use anyhow::Context as _;

use crate::mesh::Mesh;

/// Lifetime of bootstrapped development certificates.
const DEV_CERT_DAYS: u32 = 90;

/// Creates what is missing; returns one line per file created, for the user.
pub(crate) fn ensure_dev_certs(mesh: &Mesh) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    if !mesh.bootstrap_certs {
        return Ok(created);
    }
    let dir = &mesh.certs_dir;
    let now = OffsetDateTime::now_utc();
    let authority = if Authority::exists(dir) {
        Authority::open(dir)?
    } else {
        let domain = TrustDomain::new(&mesh.trust_domain)?;
        let authority = Authority::init(dir, &InitParams::new(domain, now)?, now)
            .with_context(|| format!("creating the development CA in {}", dir.display()))?;
        created.push(format!(
            "development CA for {} in {}",
            mesh.trust_domain,
            dir.display()
        ));
        authority
    };
    if authority.trust_domain().as_str() != mesh.trust_domain {
        anyhow::bail!(
            "the CA in {} is for trust domain {}, but the mesh file says {}: fix `trust_domain`, or move the old CA away so a new one is created",
            dir.display(),
            authority.trust_domain(),
            mesh.trust_domain
        );
    }
    let validity = Validity::days_from(now, DEV_CERT_DAYS)?;
    let gateway = &mesh.gateway;
    if !gateway.cert.is_file() {
        let ips: Vec<IpAddr> = vec![gateway.connect.ip()];
        let dns = match gateway.server_name.parse::<IpAddr>() {
            Ok(_) => vec!["localhost".to_owned()],
            Err(_) => vec![gateway.server_name.clone()],
        };
        let name = WorkloadName::new(&gateway.name)?;
        let issued = authority.issue(&IssueParams::gateway(name, dns, ips, validity))?;
        created.push(format!(
            "gateway certificate {} ({})",
            issued.id,
            gateway.cert.display()
        ));
    }
    for agent in &mesh.agents {
        if !agent.cert.is_file() {
            let name = WorkloadName::new(&agent.name)?;
            let issued = authority.issue(&IssueParams::agent(name, validity))?;
            created.push(format!(
                "agent certificate {} ({})",
                issued.id,
                agent.cert.display()
            ));
        }
    }
    Ok(created)
}
