//! Command-line interface: `serve` runs the daemon; the hidden `generate-man` and
//! `generate-completions` write packaging files ([`generate`]); every other subcommand is a
//! client of the operator API.

pub mod assets;
pub mod client;
pub mod commands;
pub mod generate;
pub mod output;
pub mod tls_trust;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

const ABOUT: &str =
    "Netboot provisioning server: DHCP, TFTP and HTTP boot for per-machine Hadron UKIs and \
Kairos configs, with an inventory that tracks every machine from first PXE to ready.";

const AFTER_HELP: &str = "\
Examples:
  provisioner serve                                   # defaults: ./data, API on 0.0.0.0:8080
  provisioner serve --config /etc/provisioner/provisioner.toml
  provisioner assets import hadron.efi && provisioner assets inspect hadron.efi
  provisioner profiles add hadron --uki sha256:<digest> --install-disk /dev/sda --cmdline console=ttyS0
  provisioner machines add 52:54:00:12:34:56 --hostname node-1 --profile hadron --label rack=a1
  provisioner machines import racks.csv
  provisioner machines list --state installing
  provisioner events --follow
  provisioner machines logs 52:54:00:12:34:56 --follow

Client commands find the server at --url (or PROVISIONER_URL) and authenticate with --token (or
PROVISIONER_TOKEN); on the server host the token is read from <data-dir>/operator.token.";

#[derive(Parser, Debug)]
#[command(name = "provisioner", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

/// Options shared by all subcommands.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory: the inventory database, operator.token and the asset store live here.
    #[arg(long, global = true, env = "PROVISIONER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// API base URL for client commands.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Operator API token for client commands (default: <data-dir>/operator.token).
    #[arg(long, global = true, env = "PROVISIONER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables (client commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// Trust this CA certificate (PEM) for an https:// --url (default: <data-dir>/tls/ca.pem
    /// when it exists, else the system's roots).
    #[arg(long, global = true, env = "PROVISIONER_CA", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Pin the server's certificate, or the CA that issued it, by SHA-256 fingerprint
    /// (sha256:HEX, as `provisioner serve` logs it); no other trust is used.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_CA_FINGERPRINT",
        value_name = "sha256:HEX"
    )]
    pub ca_fingerprint: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: HTTP (API, iPXE scripts, assets, configs), TFTP, DHCP and syslog when configured.
    #[command(
        after_help = "Example:\n  provisioner serve --data-dir /var/lib/provisioner --listen 0.0.0.0:8080\n\n\
On first start an operator token is created and written once to <data-dir>/operator.token (mode 0600).\n\
Logs a line 'listening on SCHEME://ADDR' per listener (tftp, dhcp, syslog, http last); stops cleanly on SIGTERM or Ctrl-C."
    )]
    Serve(ServeArgs),
    /// Register, list and manage machines.
    #[command(subcommand)]
    Machines(MachinesCmd),
    /// Manage profiles (what a class of machines boots and how it is configured).
    #[command(subcommand)]
    Profiles(ProfilesCmd),
    /// Import, list, inspect and remove boot assets (UKIs, iPXE loaders).
    #[command(subcommand)]
    Assets(AssetsCmd),
    /// Show the event history, or follow it live.
    #[command(
        after_help = "Examples:\n  provisioner events --machine 52:54:00:12:34:56\n  provisioner events --follow --after 1200"
    )]
    Events(EventsArgs),
    /// List the DHCP leases the server holds (address, MAC, until when; proxy-mode observations).
    #[command(
        after_help = "Example:\n  provisioner leases\n  provisioner leases --json | jq '.[] | select(.active)'"
    )]
    Leases,
    /// Write the man pages (provisioner.1 and one per subcommand) into DIR; for packagers.
    #[command(hide = true)]
    GenerateMan {
        /// Directory to write the pages into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the shell completion script for SHELL on stdout; for packagers.
    #[command(hide = true)]
    GenerateCompletions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file (see provisioner.example.toml); every key is optional.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for the HTTP API, overriding http.listen (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Address for TFTP, overriding tftp.listen (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    pub tftp_listen: Option<SocketAddr>,
    /// Do not run the TFTP server (overrides tftp.enabled).
    #[arg(long)]
    pub no_tftp: bool,
    /// Log format, overriding log.format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Address for the HTTPS listener, overriding tls.listen (port 0 picks a free port); turns
    /// TLS on.
    #[arg(long, value_name = "IP:PORT")]
    pub tls_listen: Option<SocketAddr>,
    /// Address for the syslog receiver, overriding syslog.listen (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    pub syslog_listen: Option<SocketAddr>,
    /// Keep the inventory on these etcd members (client URLs, comma-separated), overriding
    /// store.backend and store.endpoints; the other [store] keys still apply.
    #[arg(long, value_name = "URL,URL", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// Fetch an asset this server lacks from these provisioners by digest (base URLs,
    /// comma-separated, e.g. http://198.18.0.3:8080), overriding store.asset_peers. Needs the
    /// etcd store (its shared catalogue says which assets exist); bytes are checked against
    /// the SHA-256 before anything is kept or served.
    #[arg(long, value_name = "URL,URL", value_delimiter = ',')]
    pub asset_peers: Option<Vec<String>>,
}

#[derive(Subcommand, Debug)]
pub enum AssetsCmd {
    /// Import a UKI (checked: it must be one) or, with --loader, an iPXE loader.
    #[command(
        after_help = "Example:\n  provisioner assets import hadron-v0.1.efi\n\n\
The file is stored under <data-dir>/assets by its SHA-256; importing it again changes nothing."
    )]
    Import {
        file: PathBuf,
        /// The file is a network loader (ipxe.efi, snponly.efi, undionly.kpxe), not a UKI.
        #[arg(long)]
        loader: bool,
    },
    /// List stored assets.
    List,
    /// Show a UKI's os-release, uname, cmdline, signature and sections (a local FILE or a DIGEST).
    #[command(
        after_help = "The signature verdict (unsigned, trusted, untrusted, bad_signature, digest_mismatch) is\n\
checked against the server's secure_boot.db_certs for a DIGEST, and against --db-cert for a local FILE.\n\n\
Example:\n  provisioner assets inspect hadron.signed.efi --db-cert db.pem"
    )]
    Inspect {
        #[arg(value_name = "FILE|DIGEST")]
        what: String,
        /// Check a local FILE's signature against this certificate (PEM or DER; repeatable):
        /// the certificates enrolled in the machines' UEFI db.
        #[arg(long, value_name = "PEM")]
        db_cert: Vec<PathBuf>,
    },
    /// Remove an asset (refused while a profile uses it).
    Rm { digest: String },
    /// Remove leftovers of interrupted imports; with --unreferenced also every asset no profile uses.
    Gc {
        #[arg(long)]
        unreferenced: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MachinesCmd {
    /// Register one machine by MAC.
    #[command(
        after_help = "Example:\n  provisioner machines add 52-54-00-12-34-56 --hostname node-1 --profile hadron --label rack=a1 --ip 198.18.0.21"
    )]
    Add(MachineAddArgs),
    /// List machines.
    List {
        /// Only machines in this state (registered, booting, installing, installed, ready, failed, …).
        #[arg(long)]
        state: Option<String>,
        /// Only machines using this profile.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Show one machine in full, with its recent events.
    Show { mac: String },
    /// Remove a machine from the inventory.
    Rm { mac: String },
    /// Import machines from a CSV file ('-' for stdin); all or nothing.
    #[command(
        after_help = "Format: one machine per line, `mac,hostname,profile,key=value,...` (hostname and profile may be\n\
empty), or a header line starting with `mac` naming the columns: mac, hostname, profile, ip, uuid,\n\
serial, site; other column names become labels. `#` starts a comment. Any bad line (reported by\n\
line number) rejects the whole file.\n\nExample:\n  printf 'mac,hostname,profile,rack\\n52:54:00:00:00:01,n1,hadron,a1\\n' > racks.csv\n  provisioner machines import racks.csv"
    )]
    Import { file: PathBuf },
    /// Reinstall a machine on its next netboot.
    Reprovision { mac: String },
    /// Show a machine's log lines (remote syslog and installer), or follow them live.
    Logs {
        mac: String,
        /// Keep printing new lines as they arrive (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
    /// Print a machine's enrollment token (what its config carries) for installers set up by hand.
    ///
    /// With --rotate, revoke the current token and the installed OS's apiKey first and print the
    /// new token (a reprovision also rotates). The machine gets the new one with its next config.
    #[command(
        after_help = "Examples:\n  provisioner machines token 52:54:00:12:34:56\n  provisioner machines token 52:54:00:12:34:56 --rotate   # after a leak: the old token stops working"
    )]
    Token {
        /// The machine's MAC address (aa:bb:cc:dd:ee:ff, aa-bb-.., aabb.ccdd.eeff or bare hex).
        mac: String,
        /// Revoke the current token and apiKey, then print the new token.
        #[arg(long)]
        rotate: bool,
    },
    /// Approve a discovered machine so it installs on its next netboot.
    Approve {
        mac: String,
        /// Assign this profile while approving.
        #[arg(long)]
        profile: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct MachineAddArgs {
    /// MAC address (aa:bb:cc:dd:ee:ff, aa-bb-…, aabb.ccdd.eeff or bare hex).
    pub mac: String,
    /// Host name (RFC 1123) rendered into its config; default `node-<mac hex>`.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Profile that says what it boots (create it first with `profiles add`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Label as key=value; repeatable (at most 64).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Reserved DHCP address (refused while another client holds a lease on it).
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// SMBIOS system UUID (one machine per UUID), for `config?uuid=` URLs.
    #[arg(long)]
    pub uuid: Option<String>,
    /// Serial number, rendered into its config as `serial`.
    #[arg(long)]
    pub serial: Option<String>,
    /// Site name, rendered into its config as `site`.
    #[arg(long)]
    pub site: Option<String>,
    /// Loader file to hand this machine instead of the architecture default.
    #[arg(long)]
    pub loader: Option<String>,
    /// Extra kernel command line for this machine.
    #[arg(long)]
    pub extra_cmdline: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ProfilesCmd {
    /// Create a profile (or replace it with --replace).
    #[command(
        after_help = "The cloud-config template (minijinja) must render into a #cloud-config YAML mapping:\n\
its first line exactly `#cloud-config`, then `key: value` entries, no key twice. Variables:\n\
mac, hostname, uuid, serial, site, ip, labels, profile, install.device, token,\n\
urls.{base,config,register,progress,logs,attestation}, syslog. Undefined names are errors: test optional ones\n\
with `{% if labels.rack is defined %}`, and splice free text with `{{ labels.rack | tojson }}`.\n\
The template is rendered for a sample machine when saved; a profile that does not render is refused.\n\n\
Example:\n  provisioner profiles add hadron --uki sha256:<digest> --cloud-config hadron.yaml --install-disk /dev/sda"
    )]
    Add(ProfileAddArgs),
    /// List profiles.
    List,
    /// Show one profile in full.
    Show { name: String },
    /// Remove a profile (refused while machines use it).
    Rm { name: String },
    /// Pin the PCR 11 value its machines must report while installing (measured boot).
    #[command(
        after_help = "systemd-stub measures the UKI's sections into TPM PCR 11 before the kernel starts;\n\
the installer reports it (POST /api/v1/nodes/attestation) and a machine whose value differs from the\n\
pin is failed with both values in the reason.\n\n\
Examples:\n  provisioner profiles pin-pcr11 hadron --from-uki           # computed from the profile's UKI\n  \
provisioner profiles pin-pcr11 hadron --from-machine 52:54:00:12:34:56  # learned from a first machine\n  \
provisioner profiles pin-pcr11 hadron --value <64 hex>\n  provisioner profiles pin-pcr11 hadron --clear"
    )]
    PinPcr11(PinPcr11Args),
}

#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["from_uki", "from_machine", "value", "clear"])
))]
pub struct PinPcr11Args {
    /// Profile name.
    pub name: String,
    /// Compute the value from the profile's UKI (the stub's measurement, no boot phases).
    #[arg(long)]
    pub from_uki: bool,
    /// Take the value a machine of this profile reported (confirming what it booted).
    #[arg(long, value_name = "MAC")]
    pub from_machine: Option<String>,
    /// Pin this value (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub value: Option<String>,
    /// Remove the pin.
    #[arg(long)]
    pub clear: bool,
}

#[derive(Args, Debug)]
pub struct ProfileAddArgs {
    /// Profile name (letters, digits, `-`, `_`), used by `machines add --profile NAME`.
    pub name: String,
    /// Digest of the UKI asset to boot (sha256:<hex>).
    #[arg(long)]
    pub uki: Option<String>,
    /// File holding the Kairos cloud-config template.
    #[arg(long, value_name = "FILE")]
    pub cloud_config: Option<PathBuf>,
    /// Kernel command line additions.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Disk the installer writes to (/dev/… or auto).
    #[arg(long)]
    pub install_disk: Option<String>,
    /// Free text for operators, kept with the profile.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The SHA-256 PCR 11 its machines must report while installing (64 hex); see
    /// `profiles pin-pcr11` to compute or learn it.
    #[arg(long, value_name = "HEX")]
    pub expected_pcr11: Option<String>,
    /// The machines enforce Secure Boot: refuse a UKI whose signature the server's configured
    /// db certificates (secure_boot.db_certs) do not trust.
    #[arg(long)]
    pub secure_boot: bool,
    /// Replace an existing profile of the same name.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Keep printing new events as they happen (Ctrl-C to stop).
    #[arg(long, short)]
    pub follow: bool,
    /// Only events of this machine.
    #[arg(long)]
    pub machine: Option<String>,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many events (without --follow).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}
