//! The deployment files agree with the binaries they run.
//!
//! No Docker engine or Cloud Foundry runs in CI, so nothing here starts a container. Instead
//! every command line in `docker-compose.yml`, `manifest.yml` and the `Dockerfile` is parsed
//! by the binary's own `clap` command (leasehold's `Cli`, ccsim's `cli::Args`), with the
//! service's environment as the only environment — so an unknown flag, a misspelt variable
//! or a value the binary would refuse fails here. The ports, URLs, service names, mounts
//! and the ccsim seed are then checked against what those commands would listen on and read.
//! (`scripts/check-deploy` validates the compose file against the Compose Specification.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use leasehold::config::UpstreamMode;
use serde_json::Value;

/// Variables the binaries read outside their flags (tracing's filter).
const NON_FLAG_VARIABLES: &[&str] = &["RUST_LOG"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The binaries

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Leasehold,
    Ccsim,
}

impl Binary {
    /// The binary an argv runs, by the file name of its program (`./leasehold`, `ccsim`).
    fn of(argv: &[String]) -> Option<Binary> {
        let program = argv.first()?;
        match Path::new(program).file_name()?.to_str()? {
            "leasehold" => Some(Binary::Leasehold),
            "ccsim" => Some(Binary::Ccsim),
            _ => None,
        }
    }

    fn command(self) -> clap::Command {
        match self {
            Binary::Leasehold => leasehold::config::Cli::command(),
            Binary::Ccsim => ccsim::cli::Args::command(),
        }
    }

    /// Every flag of the binary and its subcommands, with the variable it falls back to.
    fn flags(self) -> Vec<clap::Arg> {
        fn collect(command: &clap::Command, into: &mut Vec<clap::Arg>) {
            into.extend(command.get_arguments().cloned());
            command.get_subcommands().for_each(|sub| collect(sub, into));
        }
        let mut flags = Vec::new();
        collect(&self.command(), &mut flags);
        flags
    }

    fn variables(self) -> BTreeSet<String> {
        self.flags()
            .iter()
            .filter_map(|flag| flag.get_env()?.to_str().map(str::to_owned))
            .collect()
    }

    /// Parses `argv` as the binary would with `env` as its whole environment (the test's own
    /// environment is ignored). A flag on the command line wins over its variable, as in clap.
    fn parse(self, argv: &[String], env: &BTreeMap<String, String>) -> Result<ArgMatches, String> {
        fn without_env(command: clap::Command) -> clap::Command {
            command
                .mut_args(|arg| arg.env(None::<&str>))
                .mut_subcommands(without_env)
        }
        let parse = |argv: &[String]| {
            without_env(self.command())
                .try_get_matches_from(argv)
                .map_err(|e| format!("`{}`: {}", argv.join(" "), e.render()))
        };
        let given = parse(argv)?;
        let flags = self.flags();
        let mut full = argv.to_vec();
        for (name, value) in env {
            if NON_FLAG_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let flag = flags
                .iter()
                .find(|flag| flag.get_env().and_then(|e| e.to_str()) == Some(name.as_str()))
                .ok_or_else(|| {
                    format!(
                        "{name} is not a variable of any {self:?} flag (they are: {:?})",
                        self.variables()
                    )
                })?;
            if on_command_line(&given, flag.get_id().as_str()) {
                continue;
            }
            let long = flag
                .get_long()
                .expect("flags with a variable are long flags");
            if flag.get_action().takes_values() {
                full.push(format!("--{long}={value}"));
            } else {
                match value.as_str() {
                    "true" | "1" | "yes" | "on" => full.push(format!("--{long}")),
                    "false" | "0" | "no" | "off" | "" => {}
                    other => return Err(format!("{name}={other} is not a boolean")),
                }
            }
        }
        parse(&full).map_err(|e| format!("with {:?} set: {e}", env.keys().collect::<Vec<_>>()))
    }
}

fn on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches
            .try_contains_id(id)
            .ok()
            .and_then(|_| matches.value_source(id)),
        Some(ValueSource::CommandLine)
    ) || matches
        .subcommand()
        .is_some_and(|(_, sub)| on_command_line(sub, id))
}

fn listen(matches: &ArgMatches) -> SocketAddr {
    *matches
        .try_get_one::<SocketAddr>("listen")
        .expect("both binaries have --listen")
        .expect("--listen has a default")
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

/// Compose's interpolation as the stack runs with nothing exported: `${NAME:-default}` and
/// `${NAME-default}` are the default, `$$` is `$`. A `${NAME}` without a default would make
/// `docker compose up` depend on the caller's environment, so it fails the test.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').expect("unclosed ${ in docker-compose.yml");
            let expr = &after[..end];
            let default = expr
                .split_once(":-")
                .or_else(|| expr.split_once('-'))
                .map(|(_, default)| default)
                .unwrap_or_else(|| {
                    panic!("docker-compose.yml needs ${{{expr}}} set: give it a default")
                });
            out.push_str(default);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

struct Compose {
    services: BTreeMap<String, Value>,
    volumes: BTreeSet<String>,
}

fn compose() -> Compose {
    let document: Value = yaml_serde::from_str(&interpolate(&read("docker-compose.yml")))
        .expect("docker-compose.yml is YAML");
    let services = document["services"]
        .as_object()
        .expect("services")
        .iter()
        .map(|(name, service)| (name.clone(), service.clone()))
        .collect();
    let volumes = document["volumes"]
        .as_object()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    Compose { services, volumes }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| scalar(item).expect("a list of strings"))
            .collect(),
        _ => Vec::new(),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A compose service's `environment:` as a map.
fn environment(service: &Value) -> BTreeMap<String, String> {
    variables(&service["environment"])
}

/// Variables as a map, from a mapping or a list of `NAME=value` (compose's two forms).
fn variables(value: &Value) -> BTreeMap<String, String> {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), scalar(v).unwrap_or_default()))
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The argv a service runs: its `command`, else the image's `CMD` when built from our Dockerfile.
fn argv(service: &Value) -> Vec<String> {
    let command = strings(&service["command"]);
    if command.is_empty() && !service["build"].is_null() {
        return dockerfile().cmd;
    }
    command
}

/// A service running one of our binaries, parsed with its environment.
struct Ours {
    binary: Binary,
    matches: ArgMatches,
}

fn ours(name: &str, service: &Value) -> Option<Ours> {
    let argv = argv(service);
    let binary = Binary::of(&argv)?;
    let matches = binary
        .parse(&argv, &environment(service))
        .unwrap_or_else(|e| panic!("service {name}: {e}"));
    Some(Ours { binary, matches })
}

/// The container ports a service publishes.
fn container_ports(service: &Value) -> Vec<u16> {
    let Some(ports) = service["ports"].as_array() else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|port| match port {
            Value::Object(long) => scalar(&long["target"]).expect("ports[].target"),
            short => {
                let short = scalar(short).expect("a port mapping");
                let short = short.split('/').next().unwrap_or_default().to_owned();
                short.rsplit(':').next().unwrap_or_default().to_owned()
            }
        })
        .map(|port| {
            port.parse()
                .unwrap_or_else(|_| panic!("container port {port}"))
        })
        .collect()
}

/// The argv of a healthcheck's test, when it runs a program directly or through a shell.
fn healthcheck_argv(service: &Value) -> Vec<String> {
    let test = strings(&service["healthcheck"]["test"]);
    match test.first().map(String::as_str) {
        Some("CMD") | Some("CMD-SHELL") => test[1..]
            .iter()
            .flat_map(|part| part.split_whitespace().map(str::to_owned))
            .collect(),
        Some("NONE") | None => Vec::new(),
        Some(_) => test,
    }
}

fn has_healthcheck(service: &Value) -> bool {
    let check = &service["healthcheck"];
    check["disable"] != Value::Bool(true) && !healthcheck_argv(service).is_empty()
}

#[test]
fn every_compose_service_running_our_image_runs_a_real_command_of_leasehold_or_ccsim() {
    let compose = compose();
    let mut seen = BTreeSet::new();
    for (name, service) in &compose.services {
        let built = !service["build"].is_null() || service["image"] == "leasehold:local";
        match ours(name, service) {
            Some(ours) => {
                assert!(
                    built,
                    "service {name} runs {:?} but not from our image",
                    ours.binary
                );
                seen.insert(name.as_str());
            }
            None => assert!(
                !built,
                "service {name} is built from the Dockerfile but runs {:?}",
                argv(service)
            ),
        }
    }
    assert_eq!(seen, BTreeSet::from(["ccsim", "leasehold"]));
}

#[test]
fn compose_environments_set_only_variables_the_binary_reads() {
    for (name, service) in &compose().services {
        let Some(binary) = Binary::of(&argv(service)) else {
            continue;
        };
        let known = binary.variables();
        for variable in environment(service).keys() {
            assert!(
                known.contains(variable) || NON_FLAG_VARIABLES.contains(&variable.as_str()),
                "service {name} sets {variable}, which {binary:?} does not read; it reads {known:?}"
            );
        }
    }
}

#[test]
fn the_leasehold_service_runs_the_cloud_controller_upstream_against_ccsim() {
    let compose = compose();
    let leasehold = ours("leasehold", &compose.services["leasehold"]).expect("leasehold");
    let m = &leasehold.matches;
    assert_eq!(
        m.get_one::<UpstreamMode>("upstream"),
        Some(&UpstreamMode::CloudController)
    );
    for id in [
        "database_url",
        "cf_api_url",
        "cf_client_id",
        "cf_client_secret",
    ] {
        assert!(m.get_one::<String>(id).is_some(), "leasehold needs {id}");
    }
    // ccsim's default UAA client is the one leasehold presents.
    let ccsim = ours("ccsim", &compose.services["ccsim"]).expect("ccsim");
    let clients = ccsim.matches.get_one::<String>("clients").expect("clients");
    let expected = format!(
        "{}:{}:",
        m.get_one::<String>("cf_client_id").unwrap(),
        m.get_one::<String>("cf_client_secret").unwrap()
    );
    assert!(
        clients
            .split([';', ' '])
            .any(|client| client.starts_with(&expected)),
        "ccsim's clients {clients:?} do not include leasehold's {expected:?}"
    );
}

#[test]
fn published_ports_and_health_checks_reach_each_binarys_listen_address() {
    for (name, service) in &compose().services {
        let Some(ours) = ours(name, service) else {
            assert!(
                container_ports(service).is_empty(),
                "service {name} publishes ports nothing here checks"
            );
            continue;
        };
        let listen = listen(&ours.matches);
        let published = container_ports(service);
        assert!(!published.is_empty(), "service {name} publishes no port");
        for port in published {
            assert_eq!(
                port,
                listen.port(),
                "service {name} publishes {port}, listens on {listen}"
            );
        }
        assert!(
            listen.ip().is_unspecified(),
            "service {name} listens on {listen}: a published port cannot reach it"
        );

        assert!(
            has_healthcheck(service),
            "service {name} has no health check"
        );
        let check = healthcheck_argv(service);
        if Binary::of(&check) == Some(Binary::Leasehold) {
            // The check runs in the service's container, with its environment; leasehold
            // ignores the variables that are not its own (ccsim's, say).
            let known = Binary::Leasehold.variables();
            let mut env = environment(service);
            env.retain(|name, _| known.contains(name));
            let probe = Binary::Leasehold
                .parse(&check, &env)
                .unwrap_or_else(|e| panic!("service {name}'s health check: {e}"));
            let url = probe_url(&probe);
            assert_eq!(
                url.port_or_known_default(),
                Some(listen.port()),
                "service {name}'s health check probes {url}, it listens on {listen}"
            );
        }
    }
}

fn probe_url(probe: &ArgMatches) -> url::Url {
    assert_eq!(
        probe.subcommand_name(),
        Some("probe"),
        "a health check runs `leasehold probe`"
    );
    let url = probe
        .try_get_one::<String>("url")
        .expect("`leasehold probe` has --url")
        .expect("--url has a default");
    url::Url::parse(url).unwrap_or_else(|e| panic!("--url {url}: {e}"))
}

#[test]
fn depends_on_names_existing_services_with_health_checks_and_no_profile_only_ones() {
    let compose = compose();
    for (name, service) in &compose.services {
        let depends_on: Vec<(String, Option<String>)> = match &service["depends_on"] {
            Value::Array(names) => names.iter().map(|n| (scalar(n).unwrap(), None)).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(n, c)| (n.clone(), c["condition"].as_str().map(str::to_owned)))
                .collect(),
            _ => Vec::new(),
        };
        for (target, condition) in depends_on {
            let dependency = compose.services.get(&target).unwrap_or_else(|| {
                panic!("service {name} depends on {target}, which is not a service")
            });
            if condition.as_deref() == Some("service_healthy") {
                assert!(
                    has_healthcheck(dependency),
                    "{name} waits for {target} to be healthy; it has no health check"
                );
            }
            assert!(
                !service["profiles"].is_null() || dependency["profiles"].is_null(),
                "service {name} is always started but depends on {target}, which needs a profile"
            );
        }
    }
}

#[test]
fn urls_in_the_stack_point_at_services_that_listen_there() {
    let compose = compose();
    let listens: BTreeMap<&str, SocketAddr> = compose
        .services
        .iter()
        .filter_map(|(name, service)| Some((name.as_str(), listen(&ours(name, service)?.matches))))
        .collect();
    let mut checked = 0;
    for (name, service) in &compose.services {
        // leasehold's and ccsim's URL settings, as they would read them.
        let mut urls: Vec<(String, String)> = Vec::new();
        if let Some(ours) = ours(name, service) {
            for id in ["database_url", "cf_api_url", "public_url"] {
                if let Ok(Some(url)) = ours.matches.try_get_one::<String>(id) {
                    urls.push((id.to_owned(), url.clone()));
                }
            }
        }
        // Any service's DATABASE_URL (the tests service's included).
        if let Some(url) = environment(service).get("DATABASE_URL") {
            urls.push(("DATABASE_URL".to_owned(), url.clone()));
        }
        for (what, url) in urls {
            let parsed =
                url::Url::parse(&url).unwrap_or_else(|e| panic!("{name} {what} {url}: {e}"));
            let host = parsed.host_str().expect("a host");
            let target = compose.services.get(host).unwrap_or_else(|| {
                panic!("service {name}'s {what} {url} names {host}, not a service")
            });
            if let Some(listen) = listens.get(host) {
                assert_eq!(
                    parsed.port_or_known_default(),
                    Some(listen.port()),
                    "{name}'s {what} {url}: {host} listens on {listen}"
                );
            } else if target["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("postgres:"))
            {
                let env = environment(target);
                assert_eq!(
                    parsed.port_or_known_default().unwrap_or(5432),
                    5432,
                    "{name}'s {what}: PostgreSQL's port"
                );
                assert_eq!(
                    Some(parsed.username()),
                    env.get("POSTGRES_USER").map(String::as_str),
                    "{name}'s {what}: user"
                );
                assert_eq!(
                    parsed.password(),
                    env.get("POSTGRES_PASSWORD").map(String::as_str),
                    "{name}'s {what}: password"
                );
                assert_eq!(
                    Some(parsed.path().trim_start_matches('/')),
                    env.get("POSTGRES_DB").map(String::as_str),
                    "{name}'s {what}: database"
                );
            } else {
                panic!("service {name}'s {what} {url}: nothing checks what {host} listens on");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} URLs checked");
}

#[test]
fn volumes_are_declared_and_bind_mounts_exist() {
    let compose = compose();
    for (name, service) in &compose.services {
        for volume in strings(&service["volumes"]) {
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    repo().join(source).exists(),
                    "service {name} mounts {source}, which does not exist"
                );
            } else {
                assert!(
                    compose.volumes.contains(source),
                    "service {name} uses volume {source}, not declared"
                );
            }
        }
    }
}

#[tokio::test]
async fn ccsim_loads_the_seed_file_the_compose_service_mounts() {
    let compose = compose();
    let service = &compose.services["ccsim"];
    let ccsim = ours("ccsim", service).expect("ccsim");
    let seed = ccsim
        .matches
        .get_one::<PathBuf>("seed")
        .expect("the ccsim service is seeded");
    let host_file = strings(&service["volumes"])
        .iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            let inside = seed.strip_prefix(target).ok()?;
            let source = repo().join(source);
            // A file mounted onto the path itself, or a file inside a mounted directory.
            Some(if inside.as_os_str().is_empty() {
                source
            } else {
                source.join(inside)
            })
        })
        .unwrap_or_else(|| panic!("--seed {} is not inside a mounted volume", seed.display()));
    let seeded: Value =
        serde_json::from_str(&std::fs::read_to_string(&host_file).expect("seed file"))
            .expect("JSON");
    let types: BTreeSet<&str> = seeded
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|entry| entry["type"].as_str())
        .collect();
    for ty in ["apps", "routes", "spaces"] {
        assert!(types.contains(ty), "the seed has no {ty}");
    }

    let config = ccsim::Config {
        seed_file: Some(host_file),
        public_url: ccsim.matches.get_one::<String>("public_url").cloned(),
        ..ccsim::Config::default()
    };
    let sim = ccsim::spawn(config).await.expect("ccsim accepts the seed");
    // The walkthrough's route is there, with links on the compose network's URL.
    let route = reqwest::get(format!(
        "http://{}/admin/resources/routes/9f1c3a52-0c5e-4b8e-b3a4-8f0e2f6d7a10",
        sim.addr
    ))
    .await
    .expect("GET")
    .json::<Value>()
    .await
    .expect("JSON");
    assert_eq!(route["host"], "orders");
    assert_eq!(
        route["links"]["space"]["href"],
        "http://ccsim:9090/v3/spaces/885a8cb3-c07b-4856-b448-eeb10bf36236"
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// manifest.yml

#[test]
fn the_manifest_runs_leasehold_serve_with_a_readiness_health_check_and_a_database() {
    let manifest: Value =
        yaml_serde::from_str(&read("manifest.yml")).expect("manifest.yml is YAML");
    let apps = manifest["applications"].as_array().expect("applications");
    assert_eq!(apps.len(), 1);
    let app = &apps[0];

    let command = strings(&app["command"]);
    assert_eq!(
        Binary::of(&command),
        Some(Binary::Leasehold),
        "the manifest's command: {command:?}"
    );
    let env = variables(&app["env"]);
    let matches = Binary::Leasehold
        .parse(&command, &env)
        .unwrap_or_else(|e| panic!("manifest.yml: {e}"));
    assert_eq!(
        matches.subcommand_name(),
        Some("serve"),
        "the manifest's command runs the service"
    );
    assert!(
        !on_command_line(&matches, "listen") && !on_command_line(&matches, "database_url"),
        "the command must leave the address and the database to PORT and VCAP_SERVICES"
    );
    assert_eq!(strings(&app["buildpacks"]), ["binary_buildpack"]);
    assert_eq!(app["stack"], "cflinuxfs4");
    assert_eq!(app["health-check-type"], "http");
    assert_eq!(app["health-check-http-endpoint"], "/readyz");
    assert!(
        !strings(&app["services"]).is_empty(),
        "a PostgreSQL service is bound"
    );
    for quota in ["memory", "disk_quota"] {
        let value = app[quota].as_str().unwrap_or_default();
        let digits = value.trim_end_matches(['M', 'G', 'B']);
        assert!(
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.len() < value.len(),
            "{quota}: {value:?} is not like 256M or 1G"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Dockerfile

struct Dockerfile {
    /// The whole file, continuation lines joined.
    text: String,
    /// The final stage's instructions: keyword (upper case) and the rest of the line.
    runtime: Vec<(String, String)>,
    cmd: Vec<String>,
}

fn dockerfile() -> Dockerfile {
    let raw = read("Dockerfile");
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in raw.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM");
    let runtime: Vec<(String, String)> = lines[last_from..]
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, rest)| (k.to_ascii_uppercase(), rest.trim().to_owned()))
        .collect();
    let cmd = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "CMD")
        .map(|(_, json)| serde_json::from_str(json).expect("CMD in exec (JSON) form"))
        .expect("CMD");
    Dockerfile {
        text: lines.join("\n"),
        runtime,
        cmd,
    }
}

#[test]
fn the_image_builds_both_binaries_and_listens_exposes_and_probes_one_port() {
    let docker = dockerfile();
    assert!(
        docker
            .text
            .contains("cargo build --release --locked -p leasehold -p ccsim")
    );
    let get = |keyword: &str| -> Vec<&str> {
        docker
            .runtime
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    let copied = get("COPY").join(" ");
    for binary in ["/leasehold", "/ccsim", "/usr/local/bin/"] {
        assert!(
            copied.contains(binary),
            "the runtime image copies {binary}: {copied}"
        );
    }
    let user = get("USER").last().copied().unwrap_or("root");
    assert!(
        !["root", "0", "root:root", "0:0"].contains(&user),
        "the image runs as {user}"
    );

    let env: BTreeMap<String, String> = get("ENV")
        .iter()
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let serve = Binary::Leasehold
        .parse(&docker.cmd, &env)
        .unwrap_or_else(|e| panic!("Dockerfile CMD: {e}"));
    let listen = listen(&serve);
    assert!(
        listen.ip().is_unspecified(),
        "the image listens on {listen}"
    );
    assert_eq!(get("EXPOSE"), [listen.port().to_string()]);

    let healthcheck = get("HEALTHCHECK");
    let json = healthcheck
        .first()
        .and_then(|rest| rest.split_once("CMD "))
        .map(|(_, json)| json)
        .expect("HEALTHCHECK … CMD [...]");
    let argv: Vec<String> = serde_json::from_str(json).expect("HEALTHCHECK CMD in exec form");
    let probe = Binary::Leasehold
        .parse(&argv, &env)
        .unwrap_or_else(|e| panic!("HEALTHCHECK: {e}"));
    let url = probe_url(&probe);
    assert_eq!(
        url.port_or_known_default(),
        Some(listen.port()),
        "HEALTHCHECK probes {url}"
    );
    assert_eq!(
        probe
            .subcommand()
            .and_then(|(_, m)| m.get_one::<String>("path"))
            .map(String::as_str),
        Some("/readyz")
    );
}
