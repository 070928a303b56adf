//! `aimux certs`: create the mesh CA, issue agent and gateway certificates, revoke and list
//! them. The work is done by `aimux_certs::Authority`; this module parses arguments and prints.

use crate::output::outln;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aimux_certs::time::OffsetDateTime;
use aimux_certs::{
    Authority, CA_VALIDITY_DAYS, CRL_VALIDITY, DEFAULT_CERT_DAYS, IdentityKind, InitParams,
    IssueParams, Listing, Revocation, Serial, TrustDomain, Validity, WorkloadName,
};
use anyhow::Context as _;
use clap::{Args, Subcommand};

/// The CA directory when `--dir` is not given.
const DEFAULT_DIR: &str = ".aimux/certs";

/// Create the mesh CA, issue agent and gateway certificates, revoke and list them.
#[derive(Debug, Args)]
#[command(after_help = "\
Everything lives in one directory (--dir, default .aimux/certs): ca.crt (trusted by every
peer), ca.key (keep it secret), crl.pem (revoked serials, loaded by the gateway) and one
NAME.crt + NAME.key pair per agent or gateway.

Typical use:
  aimux certs init --trust-domain example.org
  aimux certs issue --gateway --name edge --dns gateway.example.org
  aimux certs issue --name alice
  aimux certs revoke --name alice
  aimux certs list")]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create the mesh CA (ca.crt, ca.key) and an empty revocation list (crl.pem).
    Init(InitArgs),
    /// Issue an agent certificate, or a gateway certificate with --gateway.
    Issue(IssueArgs),
    /// Revoke a certificate: add its serial to crl.pem.
    Revoke(RevokeArgs),
    /// List issued certificates: identity, kind, serial, expiry and revocation status.
    List(ListArgs),
}

#[derive(Debug, Args)]
struct DirArg {
    /// The CA directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "\
The CA is an ECDSA P-256 key with a self-signed certificate whose URI SAN, spiffe://DOMAIN,
names the mesh; every certificate it issues is spiffe://DOMAIN/agent/NAME or
spiffe://DOMAIN/gateway/NAME. Created directories are mode 0700, ca.key is mode 0600.")]
struct InitArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The mesh trust domain, e.g. example.org: lowercase letters, digits, `.`, `-`, `_`.
    #[arg(long, value_name = "DOMAIN")]
    trust_domain: TrustDomain,
    /// How long the CA is valid, in days.
    #[arg(long, value_name = "N", default_value_t = CA_VALIDITY_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Replace an existing CA. Every certificate it issued stops being trusted.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Agent certificates (spiffe://DOMAIN/agent/NAME) carry the clientAuth usage and are presented
by the agent's sidecar; gateway certificates (spiffe://DOMAIN/gateway/NAME, plus any --dns and
--ip names) carry serverAuth. The key is written next to the certificate with mode 0600.")]
struct IssueArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The agent's (or gateway's) name: lowercase letters, digits, `.`, `_`, `-`; at most 63.
    #[arg(long, value_name = "NAME")]
    name: WorkloadName,
    /// How long the certificate is valid, in days (at most until the CA expires).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CERT_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Issue a gateway (server) certificate instead of an agent certificate.
    #[arg(long)]
    gateway: bool,
    /// A DNS name the gateway is reached at (repeatable; gateway only).
    #[arg(long = "dns", value_name = "HOST", requires = "gateway")]
    dns_names: Vec<String>,
    /// An IP address the gateway is reached at (repeatable; gateway only).
    #[arg(long = "ip", value_name = "ADDR", requires = "gateway")]
    ip_addresses: Vec<IpAddr>,
    /// Replace an existing certificate of that name. The old one stays valid until it expires
    /// unless revoked: revoke it first if its key may be compromised.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
The gateway refuses the certificate once it has loaded the new crl.pem. Revoking a certificate
that is already revoked changes nothing.")]
struct RevokeArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The name of the certificate to revoke (NAME.crt in the CA directory).
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "serial",
        conflicts_with = "serial"
    )]
    name: Option<WorkloadName>,
    /// Revoke by serial number (hex, as `list` shows it), e.g. a certificate replaced by
    /// `issue --force`.
    #[arg(long, value_name = "HEX")]
    serial: Option<Serial>,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    match args.command {
        CertsCommand::Init(args) => init(args, now),
        CertsCommand::Issue(args) => issue(args, now),
        CertsCommand::Revoke(args) => revoke(args, now),
        CertsCommand::List(args) => list(args, now),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn init(args: InitArgs, now: OffsetDateTime) -> anyhow::Result<()> {
    let dir = &args.dir.dir;
    let replacing = Authority::exists(dir);
    let mut params = InitParams::new(args.trust_domain, now)?;
    params.validity = Validity::days_from(now, args.days)?;
    params.force = args.force;
    let ca = Authority::init(dir, &params, now)?;
    let paths = ca.dir();
    if replacing {
        outln!(
            "replaced the CA in {}: certificates issued by the previous CA are no longer \
             trusted; issue new ones",
            dir.display()
        );
    }
    outln!(
        "created CA {} (serial {}, valid until {})",
        ca.ca_id(),
        ca.ca_serial(),
        ca.ca_not_after().date()
    );
    outln!("  certificate  {}", paths.ca_cert().display());
    outln!(
        "  private key  {} (mode 0600: keep it secret)",
        paths.ca_key().display()
    );
    outln!("  CRL          {} (empty)", paths.crl().display());
    outln!("next: issue the gateway's certificate and one per agent:");
    outln!(
        "  aimux certs issue --dir {} --gateway --name NAME --dns HOST",
        dir.display()
    );
    outln!("  aimux certs issue --dir {} --name AGENT", dir.display());
    Ok(())
}

fn issue(args: IssueArgs, now: OffsetDateTime) -> anyhow::Result<()> {
    let ca = open(&args.dir.dir)?;
    let validity = Validity::days_from(now, args.days)?;
    let mut params = if args.gateway {
        IssueParams::gateway(args.name, args.dns_names, args.ip_addresses, validity)
    } else {
        IssueParams::agent(args.name, validity)
    };
    params.force = args.force;
    let kind = params.kind.identity_kind();
    let names = extra_names(&params.kind);
    let issued = ca.issue(&params)?;
    outln!(
        "issued {kind} certificate {}{names} → {} (key {}, serial {}, valid until {})",
        issued.id,
        issued.cert_path.display(),
        issued.key_path.display(),
        issued.serial,
        issued.validity.not_after().date()
    );
    if let Some(old) = issued.replaced.as_ref().filter(|old| !old.revoked) {
        outln!(
            "note: the replaced certificate (serial {}) was not revoked and stays valid until \
             {}; if its key may be compromised run: aimux certs revoke --dir {} --serial {}",
            old.serial,
            old.not_after.date(),
            args.dir.dir.display(),
            old.serial
        );
    }
    Ok(())
}

fn extra_names(kind: &aimux_certs::IssueKind) -> String {
    let aimux_certs::IssueKind::Gateway {
        dns_names,
        ip_addresses,
    } = kind
    else {
        return String::new();
    };
    let all: Vec<String> = dns_names
        .iter()
        .map(|d| format!("DNS:{d}"))
        .chain(ip_addresses.iter().map(|ip| format!("IP:{ip}")))
        .collect();
    if all.is_empty() {
        String::new()
    } else {
        format!(" ({})", all.join(", "))
    }
}

fn revoke(args: RevokeArgs, now: OffsetDateTime) -> anyhow::Result<()> {
    let ca = open(&args.dir.dir)?;
    let revocation = match (&args.name, &args.serial) {
        (Some(name), _) => ca.revoke(name, now)?,
        (None, Some(serial)) => ca.revoke_serial(serial, now)?,
        // clap requires one of the two.
        (None, None) => anyhow::bail!("give --name NAME or --serial HEX"),
    };
    let what = describe_revoked(&revocation);
    if revocation.already_revoked {
        outln!(
            "{what} was already revoked; {} is unchanged",
            revocation.crl_path.display()
        );
    } else {
        let count = revocation.revoked_count;
        outln!(
            "revoked {what}: {} now lists {count} certificate{} (CRL number {})",
            revocation.crl_path.display(),
            if count == 1 { "" } else { "s" },
            revocation.crl_number
        );
        outln!("the gateway refuses it once it loads the new revocation list");
    }
    Ok(())
}

fn describe_revoked(r: &Revocation) -> String {
    match &r.id {
        Some(id) => format!("{id} (serial {})", r.serial),
        None => format!("serial {}", r.serial),
    }
}

fn list(args: ListArgs, now: OffsetDateTime) -> anyhow::Result<()> {
    let ca = open(&args.dir.dir)?;
    let listing = ca.list(now)?;
    for skipped in &listing.skipped {
        eprintln!(
            "warning: skipped {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    if args.json {
        let json = serde_json::to_string_pretty(&listing).context("could not encode JSON")?;
        outln!("{json}");
        return Ok(());
    }
    crate::output::write_stdout(&table(&listing, &args.dir.dir, now))?;
    Ok(())
}

/// The human-readable listing.
fn table(listing: &Listing, dir: &Path, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let crl = &listing.crl;
    let _ = writeln!(
        out,
        "CA {} (serial {}, valid until {}); CRL #{} lists {} revoked",
        listing.ca.identity,
        listing.ca.serial,
        listing.ca.not_after.date(),
        crl.number,
        crl.revoked_count
    );
    if crl.next_update.is_some_and(|next| next < now) {
        let _ = writeln!(
            out,
            "note: {} is past its next-update date: external verifiers (openssl) reject it until \
             it is re-signed, which every revocation does (it stays current for {} days)",
            crl.path.display(),
            CRL_VALIDITY.whole_days()
        );
    }
    if listing.certificates.is_empty() {
        let _ = writeln!(
            out,
            "no certificates issued yet: aimux certs issue --dir {} --name AGENT",
            dir.display()
        );
        return out;
    }
    let rows: Vec<[String; 6]> = listing
        .certificates
        .iter()
        .map(|c| {
            let status = match (c.revoked, c.expired) {
                (true, true) => "revoked, expired",
                (true, false) => "revoked",
                (false, true) => "expired",
                (false, false) => "valid",
            };
            [
                c.name.clone(),
                c.kind.map_or("other", IdentityKind::as_str).to_owned(),
                c.identity.to_string(),
                c.serial.to_string(),
                c.not_after.date().to_string(),
                status.to_owned(),
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "IDENTITY", "SERIAL", "NOT AFTER", "STATUS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn open(dir: &Path) -> anyhow::Result<Authority> {
    Ok(Authority::open(dir)?)
}
