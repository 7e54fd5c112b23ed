//! What Cloud Foundry tells an app about its platform, turned into leasehold settings.
//!
//! On Cloud Foundry an app learns its port from `PORT` and its bound services from
//! `VCAP_SERVICES`, a JSON object that maps each service offering's label (or
//! `user-provided`) to a list of bindings, each with `name`, `label`, `tags` and
//! `credentials`. This module owns two pure functions over those strings; it reads no
//! environment itself, so the caller decides precedence (the intended rule: `DATABASE_URL`
//! wins over `VCAP_SERVICES`, `LEASEHOLD_LISTEN` wins over `PORT`).
//!
//! Invariant: leasehold never guesses between databases. Exactly one bound PostgreSQL
//! service with a usable URL is an answer, none is `None`, several is an error naming them.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Map, Value};

/// The PostgreSQL URL of the one PostgreSQL service bound to the app, from `VCAP_SERVICES`.
///
/// A binding's URL is the first of `credentials.uri`, `credentials.url` and
/// `credentials.jdbcUrl` that is a PostgreSQL URL (`postgres://` or `postgresql://` with a
/// host); a `jdbc:postgresql://…` URL loses its `jdbc:` prefix, and its `ssl=true` becomes
/// libpq's `sslmode=require`. Every binding with such a URL is a PostgreSQL binding: that
/// covers the offerings that say so in their `tags` or `label` (Tanzu's `postgres`, Azure's
/// `azure-postgresql-*`) and those that say so only through the URL (`aws-rds`, whose plans also serve MySQL; user-provided services). A binding without
/// one is skipped, even when tagged `postgres` (host/port/user fields alone are not
/// assembled), so tags and labels never change the answer.
///
/// Errors: the text is not a JSON object of lists of binding objects, or several PostgreSQL
/// services are bound (the message names them, so the operator can unbind one or set
/// `DATABASE_URL`). `Ok(None)`: no PostgreSQL service is bound.
pub fn database_url_from_vcap_services(vcap_services_json: &str) -> Result<Option<String>, String> {
    let document: Value = serde_json::from_str(vcap_services_json)
        .map_err(|error| format!("VCAP_SERVICES is not valid JSON: {error}"))?;
    let Value::Object(offerings) = document else {
        return Err("VCAP_SERVICES is not a JSON object".to_owned());
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for (key, bindings) in &offerings {
        let Value::Array(bindings) = bindings else {
            return Err(format!(
                "VCAP_SERVICES[{key:?}] is not a list of service bindings"
            ));
        };
        for (index, binding) in bindings.iter().enumerate() {
            let Value::Object(binding) = binding else {
                return Err(format!(
                    "VCAP_SERVICES[{key:?}][{index}] is not a service binding object"
                ));
            };
            if let Some(url) = postgres_url(binding) {
                found.push((binding_name(key, index, binding), url));
            }
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|(_, url)| url)),
        _ => {
            let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
            Err(format!(
                "several PostgreSQL services are bound ({}); unbind all but one or set DATABASE_URL",
                names.join(", ")
            ))
        }
    }
}

/// The address to listen on for Cloud Foundry's `PORT`: `0.0.0.0:PORT`.
///
/// Every interface, because CF's router reaches the app through the container's external
/// interface. Errors unless `port` is a decimal number from 1 to 65535.
pub fn listen_from_port(port: &str) -> Result<SocketAddr, String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "PORT must be a port number from 1 to 65535, not {port:?}"
        )),
        Ok(port) => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
    }
}

/// The binding's PostgreSQL URL, if it has one.
fn postgres_url(binding: &Map<String, Value>) -> Option<String> {
    let credentials = binding.get("credentials")?.as_object()?;
    ["uri", "url", "jdbcUrl"]
        .iter()
        .filter_map(|field| credentials.get(*field).and_then(Value::as_str))
        .find_map(usable_url)
}

/// `url` as leasehold's driver takes it, if it is a PostgreSQL URL.
fn usable_url(url: &str) -> Option<String> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("jdbc:") {
        return rest
            .starts_with("postgresql://")
            .then(|| jdbc_params(rest))
            .filter(|converted| has_host(converted));
    }
    let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
    (scheme_ok && has_host(url)).then(|| url.to_owned())
}

/// A JDBC URL's `ssl=true` as libpq's `sslmode=require` (unless an `sslmode` is given).
fn jdbc_params(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let params: Vec<&str> = query.split('&').collect();
    if params.iter().any(|p| p.starts_with("sslmode=")) {
        return url.to_owned();
    }
    let params: Vec<&str> = params
        .into_iter()
        .map(|p| {
            if p == "ssl=true" {
                "sslmode=require"
            } else {
                p
            }
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// Whether a `scheme://…` URL names a host (`postgres:///db` leaves it to libpq defaults,
/// which mean nothing inside a CF container).
fn has_host(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
        .map(|authority| authority.rsplit('@').next().unwrap_or_default())
        .is_some_and(|host| !host.is_empty() && !host.starts_with(':'))
}

/// How an operator recognises the binding: its `name`, else its `instance_name`, else where
/// it sits in VCAP_SERVICES.
fn binding_name(key: &str, index: usize, binding: &Map<String, Value>) -> String {
    ["name", "instance_name"]
        .iter()
        .find_map(|field| binding.get(*field).and_then(Value::as_str))
        .map(|name| format!("{name} ({key})"))
        .unwrap_or_else(|| format!("{key}[{index}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VMware Postgres for Tanzu (`postgres` offering, on-demand plan) next to CredHub,
    /// Redis for Tanzu and RabbitMQ for Tanzu bindings, as `cf env` prints them.
    const TANZU: &str = r#"{
      "credhub": [{
        "binding_guid": "5b1b6c0a-5a4e-4c4e-9c8e-0d6b8b0c3f11", "binding_name": null,
        "credentials": {"credhub-ref": "/c/credhub-service-broker/credhub/0b2c6d1e/credentials"},
        "instance_guid": "0b2c6d1e-6f1a-4b8e-a1d2-7c3b9e4f5a60", "instance_name": "app-secrets",
        "label": "credhub", "name": "app-secrets", "plan": "default", "provider": null,
        "syslog_drain_url": null, "tags": ["credhub"], "volume_mounts": []
      }],
      "postgres": [{
        "binding_guid": "298392bb-363f-46d4-9f6a-2752cdd745f1", "binding_name": null,
        "credentials": {
          "db": "postgres", "hosts": ["10.0.8.71"],
          "jdbcUrl": "jdbc:postgresql://10.0.8.71:5432/postgres?user=pgadmin&password=example-pw",
          "password": "example-pw", "port": 5432,
          "service_gateway_access_port": 0, "service_gateway_enabled": false,
          "uri": "postgresql://pgadmin:example-pw@10.0.8.71:5432/postgres", "user": "pgadmin"
        },
        "instance_guid": "0ca24400-500b-4227-a964-9ec278327fc2", "instance_name": "leasehold-db",
        "label": "postgres", "name": "leasehold-db", "plan": "on-demand-postgres-small",
        "provider": null, "syslog_drain_url": null,
        "tags": ["postgres", "pivotal", "on-demand"], "volume_mounts": []
      }],
      "p.redis": [{
        "binding_guid": "7d3f0c52-1f0e-4f7b-9d1c-2e8a6b4c5d70", "binding_name": null,
        "credentials": {"host": "q-s0.redis-instance.services.service-instance-1c7e.bosh",
                        "password": "example-redis-pw", "port": 6379, "tls_port": 16379},
        "instance_guid": "1c7e2a5b-3d4f-4e6a-8b9c-0d1e2f3a4b5c", "instance_name": "cache",
        "label": "p.redis", "name": "cache", "plan": "on-demand-cache", "provider": null,
        "syslog_drain_url": null, "tags": ["redis", "pivotal", "on-demand"], "volume_mounts": []
      }],
      "p.rabbitmq": [{
        "binding_guid": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", "binding_name": null,
        "credentials": {
          "dashboard_url": "https://rmq-3a1b.sys.example.com/#/login/",
          "hostname": "q-s0.rabbitmq-server.services.service-instance-3a1b.bosh",
          "password": "example-rmq-pw", "username": "b4c3a2f1",
          "uri": "amqp://b4c3a2f1:example-rmq-pw@q-s0.rabbitmq-server.services.service-instance-3a1b.bosh/3a1b",
          "protocols": {"amqp": {"port": 5672, "uri": "amqp://b4c3a2f1:example-rmq-pw@q-s0.rabbitmq-server.services.service-instance-3a1b.bosh:5672/3a1b"}}
        },
        "instance_guid": "3a1b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d", "instance_name": "events",
        "label": "p.rabbitmq", "name": "events", "plan": "single-node", "provider": null,
        "syslog_drain_url": null, "tags": ["rabbitmq"], "volume_mounts": []
      }]
    }"#;

    /// cloud.gov's AWS broker (`aws-rds`, tags `database`/`RDS`): one PostgreSQL and one
    /// MySQL instance, plus ElastiCache Redis. Only the URL scheme tells them apart.
    const AWS_RDS: &str = r#"{
      "aws-rds": [
        {
          "binding_guid": "4f5e6d7c-8b9a-4c0d-9e1f-2a3b4c5d6e7f", "binding_name": null,
          "credentials": {
            "db_name": "cgawsbrokerprodxk2v7t9q", "host": "cg-aws-broker-prodxk2v7t9q.ci7nkegdizyy.us-gov-west-1.rds.amazonaws.com",
            "name": "cgawsbrokerprodxk2v7t9q", "password": "example-rds-pw", "port": "5432",
            "uri": "postgres://uexample1:example-rds-pw@cg-aws-broker-prodxk2v7t9q.ci7nkegdizyy.us-gov-west-1.rds.amazonaws.com:5432/cgawsbrokerprodxk2v7t9q",
            "username": "uexample1"
          },
          "instance_guid": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", "instance_name": "leasehold-db",
          "label": "aws-rds", "name": "leasehold-db", "plan": "micro-psql", "provider": null,
          "syslog_drain_url": null, "tags": ["database", "RDS"], "volume_mounts": []
        },
        {
          "binding_guid": "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e", "binding_name": null,
          "credentials": {
            "db_name": "cgawsbrokerprodm3n8p1", "host": "cg-aws-broker-prodm3n8p1.ci7nkegdizyy.us-gov-west-1.rds.amazonaws.com",
            "name": "cgawsbrokerprodm3n8p1", "password": "example-mysql-pw", "port": "3306",
            "uri": "mysql://uexample2:example-mysql-pw@cg-aws-broker-prodm3n8p1.ci7nkegdizyy.us-gov-west-1.rds.amazonaws.com:3306/cgawsbrokerprodm3n8p1",
            "username": "uexample2"
          },
          "instance_guid": "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f", "instance_name": "reports-db",
          "label": "aws-rds", "name": "reports-db", "plan": "small-mysql", "provider": null,
          "syslog_drain_url": null, "tags": ["database", "RDS"], "volume_mounts": []
        }
      ],
      "aws-elasticache-redis": [{
        "credentials": {"host": "master.cg-aws-example.cache.amazonaws.com", "password": "example-redis-pw",
                        "port": "6379", "uri": "redis://:example-redis-pw@master.cg-aws-example.cache.amazonaws.com:6379"},
        "instance_name": "sessions", "label": "aws-elasticache-redis", "name": "sessions",
        "plan": "redis-dev", "provider": null, "syslog_drain_url": null,
        "tags": ["redis", "Elasticache"], "volume_mounts": []
      }]
    }"#;

    /// `cf cups leasehold-db -p '{"uri": "…"}'` (no tags), a log drain and an AMQP URL.
    const USER_PROVIDED: &str = r#"{
      "user-provided": [
        {
          "binding_guid": "8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a", "binding_name": null,
          "credentials": {"uri": "postgres://leasehold:example-pw@pg.internal.example.com:5432/leasehold?sslmode=require"},
          "instance_guid": "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", "instance_name": "leasehold-db",
          "label": "user-provided", "name": "leasehold-db", "syslog_drain_url": "",
          "tags": [], "volume_mounts": []
        },
        {
          "credentials": {}, "instance_name": "papertrail", "label": "user-provided",
          "name": "papertrail", "syslog_drain_url": "syslog-tls://logs.example.com:12345",
          "tags": [], "volume_mounts": []
        },
        {
          "credentials": {"uri": "amqps://events:example-pw@mq.example.com/leasehold"},
          "instance_name": "events", "label": "user-provided", "name": "events",
          "syslog_drain_url": "", "tags": [], "volume_mounts": []
        }
      ]
    }"#;

    /// Open Service Broker for Azure (`azure-postgresql-10`): the URI as the broker builds it.
    const AZURE_OSBA: &str = r#"{
      "azure-postgresql-10": [{
        "credentials": {
          "database": "k2x7v9b1q3", "host": "f3a1b2c4-5d6e.postgres.database.azure.com",
          "password": "example-pw", "port": 5432, "sslRequired": true,
          "tags": ["postgresql"],
          "uri": "postgresql://r8t2y4u6%40f3a1b2c4-5d6e:example-pw@f3a1b2c4-5d6e.postgres.database.azure.com:5432/k2x7v9b1q3?&sslmode=require",
          "username": "r8t2y4u6@f3a1b2c4-5d6e"
        },
        "instance_name": "leasehold-db", "label": "azure-postgresql-10", "name": "leasehold-db",
        "plan": "basic", "provider": null, "syslog_drain_url": null,
        "tags": ["Azure", "PostgreSQL", "DBMS", "Server", "Database"], "volume_mounts": []
      }]
    }"#;

    /// The older meta Azure service broker (`azure-postgresqldb`): a JDBC URL only.
    const AZURE_META: &str = r#"{
      "azure-postgresqldb": [{
        "credentials": {
          "postgresqlServerName": "postgresqlservera",
          "postgresqlServerFullyQualifiedDomainName": "postgresqlservera.postgres.database.azure.com",
          "administratorLogin": "ulrich", "administratorLoginPassword": "example-pw",
          "jdbcUrl": "jdbc:postgresql://postgresqlservera.postgres.database.azure.com:5432/leasehold?user=ulrich@postgresqlservera\u0026password=example-pw\u0026ssl=true"
        },
        "label": "azure-postgresqldb", "name": "leasehold-db", "plan": "basic100",
        "provider": null, "syslog_drain_url": null,
        "tags": ["Azure", "PostgreSQL", "Database"], "volume_mounts": []
      }]
    }"#;

    #[test]
    fn tanzu_postgres_is_found_by_its_uri_among_credhub_redis_and_rabbitmq() {
        assert_eq!(
            database_url_from_vcap_services(TANZU),
            Ok(Some(
                "postgresql://pgadmin:example-pw@10.0.8.71:5432/postgres".to_owned()
            ))
        );
    }

    #[test]
    fn an_aws_rds_postgres_instance_is_told_from_a_mysql_one_by_its_scheme() {
        assert_eq!(
            database_url_from_vcap_services(AWS_RDS),
            Ok(Some(
                "postgres://uexample1:example-rds-pw@cg-aws-broker-prodxk2v7t9q.ci7nkegdizyy.us-gov-west-1.rds.amazonaws.com:5432/cgawsbrokerprodxk2v7t9q".to_owned()
            ))
        );
    }

    #[test]
    fn an_untagged_user_provided_service_counts_through_its_uri() {
        assert_eq!(
            database_url_from_vcap_services(USER_PROVIDED),
            Ok(Some(
                "postgres://leasehold:example-pw@pg.internal.example.com:5432/leasehold?sslmode=require"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn the_azure_broker_uri_is_taken_verbatim_with_its_escaped_user() {
        assert_eq!(
            database_url_from_vcap_services(AZURE_OSBA),
            Ok(Some("postgresql://r8t2y4u6%40f3a1b2c4-5d6e:example-pw@f3a1b2c4-5d6e.postgres.database.azure.com:5432/k2x7v9b1q3?&sslmode=require".to_owned()))
        );
    }

    #[test]
    fn a_jdbc_only_binding_is_converted_and_keeps_requiring_tls() {
        assert_eq!(
            database_url_from_vcap_services(AZURE_META),
            Ok(Some("postgresql://postgresqlservera.postgres.database.azure.com:5432/leasehold?user=ulrich@postgresqlservera&password=example-pw&sslmode=require".to_owned()))
        );
    }

    #[test]
    fn every_url_found_is_one_leaseholds_driver_connects_with() {
        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        let options = |vcap: &str| {
            let url = database_url_from_vcap_services(vcap).unwrap().unwrap();
            url.parse::<PgConnectOptions>()
                .unwrap_or_else(|error| panic!("{url}: {error}"))
        };
        let tanzu = options(TANZU);
        assert_eq!(
            (tanzu.get_host(), tanzu.get_port(), tanzu.get_username()),
            ("10.0.8.71", 5432, "pgadmin")
        );
        assert_eq!(
            options(AWS_RDS).get_database(),
            Some("cgawsbrokerprodxk2v7t9q")
        );
        let require =
            |options: &PgConnectOptions| matches!(options.get_ssl_mode(), PgSslMode::Require);
        assert!(require(&options(USER_PROVIDED)));
        let azure = options(AZURE_OSBA);
        assert_eq!(azure.get_username(), "r8t2y4u6@f3a1b2c4-5d6e");
        assert!(require(&azure));
        let jdbc = options(AZURE_META);
        assert_eq!(
            (jdbc.get_username(), jdbc.get_database()),
            ("ulrich@postgresqlservera", Some("leasehold"))
        );
        assert!(require(&jdbc));
    }

    #[test]
    fn the_uri_is_preferred_over_the_jdbc_url_and_url_is_accepted() {
        let both = r#"{"postgres": [{"name": "db", "label": "postgres", "tags": ["postgres"],
            "credentials": {"jdbcUrl": "jdbc:postgresql://h:5432/a?user=u&password=p",
                            "uri": "postgresql://u:p@h:5432/b"}}]}"#;
        assert_eq!(
            database_url_from_vcap_services(both),
            Ok(Some("postgresql://u:p@h:5432/b".to_owned()))
        );
        let url = r#"{"elephantsql": [{"name": "db", "label": "elephantsql", "tags": [],
            "credentials": {"url": "postgres://u:p@hansken.db.elephantsql.com/u"}}]}"#;
        assert_eq!(
            database_url_from_vcap_services(url),
            Ok(Some(
                "postgres://u:p@hansken.db.elephantsql.com/u".to_owned()
            ))
        );
    }

    #[test]
    fn a_postgres_binding_without_a_usable_url_is_skipped() {
        // Tagged PostgreSQL, but only host/port/user fields: leasehold does not assemble them.
        let fields_only = r#"{"postgres": [{"name": "db", "label": "azure-postgresql-database",
            "tags": ["PostgreSQL"], "credentials": {"host": "db.postgres.database.azure.com",
            "port": 5432, "database": "leasehold", "username": "u@db", "password": "p"}}]}"#;
        assert_eq!(database_url_from_vcap_services(fields_only), Ok(None));
        // A JDBC URL that is not `jdbc:postgresql://host…` is not converted.
        let odd_jdbc = r#"{"postgres": [{"name": "db", "label": "postgres", "tags": ["postgres"],
            "credentials": {"jdbcUrl": "jdbc:postgresql:leasehold"}}]}"#;
        assert_eq!(database_url_from_vcap_services(odd_jdbc), Ok(None));
        let no_host =
            r#"{"postgres": [{"name": "db", "credentials": {"uri": "postgres:///leasehold"}}]}"#;
        assert_eq!(database_url_from_vcap_services(no_host), Ok(None));
        // ... and when another binding has one, that one is the answer, not an ambiguity.
        let mixed = r#"{"postgres": [
            {"name": "old", "tags": ["postgres"], "credentials": {"host": "h"}},
            {"name": "new", "tags": ["postgres"], "credentials": {"uri": "postgresql://u:p@h2/db"}}]}"#;
        assert_eq!(
            database_url_from_vcap_services(mixed),
            Ok(Some("postgresql://u:p@h2/db".to_owned()))
        );
    }

    #[test]
    fn no_bound_postgres_is_none() {
        assert_eq!(database_url_from_vcap_services("{}"), Ok(None));
        let others = r#"{"p.redis": [{"name": "cache", "label": "p.redis", "tags": ["redis"],
            "credentials": {"host": "h", "port": 6379, "password": "p"}}],
            "p.rabbitmq": [{"name": "events", "label": "p.rabbitmq", "tags": ["rabbitmq"],
            "credentials": {"uri": "amqp://u:p@h/v"}}]}"#;
        assert_eq!(database_url_from_vcap_services(others), Ok(None));
    }

    #[test]
    fn several_bound_postgres_services_are_an_error_naming_them() {
        let several = format!(
            r#"{{"postgres": {}, "user-provided": {}}}"#,
            serde_json::to_string(&serde_json::from_str::<Value>(TANZU).unwrap()["postgres"])
                .unwrap(),
            r#"[{"name": "legacy-db", "label": "user-provided", "tags": [],
                 "credentials": {"uri": "postgres://u:p@legacy.example.com/db"}}]"#
        );
        let error = database_url_from_vcap_services(&several).unwrap_err();
        assert!(
            error.contains("leasehold-db (postgres)")
                && error.contains("legacy-db (user-provided)"),
            "{error}"
        );
        assert!(error.contains("DATABASE_URL"), "{error}");
    }

    #[test]
    fn malformed_vcap_services_is_an_error() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"postgres": {"name": "db"}}"#,
            r#"{"postgres": ["db"]}"#,
        ] {
            assert!(
                database_url_from_vcap_services(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        let error = database_url_from_vcap_services("{").unwrap_err();
        assert!(
            error.starts_with("VCAP_SERVICES is not valid JSON"),
            "{error}"
        );
    }

    #[test]
    fn port_becomes_every_interface_on_that_port() {
        assert_eq!(
            listen_from_port("8080"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 8080)))
        );
        assert_eq!(
            listen_from_port("61001"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 61001)))
        );
    }

    #[test]
    fn a_port_that_is_not_1_to_65535_is_an_error() {
        for bad in [
            "",
            "0",
            "65536",
            "-1",
            "8080 ",
            " 8080",
            "80a",
            "0.0.0.0:8080",
        ] {
            let error = listen_from_port(bad).unwrap_err();
            assert!(
                error.starts_with("PORT must be a port number"),
                "{bad:?}: {error}"
            );
        }
    }
}
