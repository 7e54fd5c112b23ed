//! Bad input, table-driven: every malformed, unknown, out-of-range, oversize or
//! wrongly-typed request is answered with the right problem (API.md §2's order: 413, 415,
//! 400, 422) and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// One bad request and the problem it must get.
struct Case {
    name: String,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    code: &'static str,
    /// For 422 `invalid-metadata`: CC's messages, exactly and in order.
    errors: Option<Vec<String>>,
    /// For 405: the `Allow` header must list this method.
    allow: Option<&'static str>,
}

fn case(
    name: &str,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body: body.into(),
        content_type: Some("application/json"),
        status,
        code,
        errors: None,
        allow: None,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn content_type(mut self, ct: Option<&'static str>) -> Self {
        self.content_type = ct;
        self
    }

    fn errors(mut self, messages: &[&str]) -> Self {
        self.errors = Some(messages.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    fn allow(mut self, method: &'static str) -> Self {
        self.allow = Some(method);
        self
    }
}

fn bad_request(name: &str, method: Method, path: &str, body: impl Into<Vec<u8>>) -> Case {
    case(name, method, path, body, 400, "invalid-request")
}

/// A PATCH of `metadata` that CC's validator refuses with `messages`.
fn cc_refuses(name: &str, path: &str, metadata: Value, messages: &[&str]) -> Case {
    case(
        name,
        Method::PATCH,
        path,
        json!({ "metadata": metadata }).to_string(),
        422,
        "invalid-metadata",
    )
    .errors(messages)
}

#[tokio::test]
async fn bad_input_is_refused_with_the_right_problem_and_changes_nothing() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let res = Res::route();
    let lease = app.grant(&res, "svc/a", Some(3600)).await;
    let token = token_of(&lease);
    assert_eq!(token, 1);
    let r = app
        .set_labels(&res, json!({"a": "1"}), Some(token), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");

    let id = id_of(&lease);
    let guid = res.guid.clone();
    let p = res.path();
    let acq = res.lease_path();
    let md = format!("{p}/metadata");
    let hist = format!("{p}/history");
    let renew = format!("/v1/leases/{id}/renew");
    let lease_path = format!("/v1/leases/{id}");
    let tok = "Fencing-Token";
    let t1 = "1";

    let over_1mib = {
        let pad = "x".repeat(1024 * 1024);
        json!({"metadata": {"annotations": {"big": pad}}}).to_string()
    };
    assert!(over_1mib.len() > 1024 * 1024);
    let exactly_1mib = {
        let skeleton = json!({"metadata": {"annotations": {"big": ""}}})
            .to_string()
            .len();
        let pad = "x".repeat(1024 * 1024 - skeleton);
        json!({"metadata": {"annotations": {"big": pad}}}).to_string()
    };
    assert_eq!(exactly_1mib.len(), 1024 * 1024);
    let big_annotation_message =
        "annotation value error: 'xxxxxxxx...' is greater than 5000 characters";

    let holder_129 = "h".repeat(129);
    let hex32 = guid.replace('-', "");
    let a64 = "a".repeat(64);
    let b64 = "b".repeat(64);
    let x5001 = "x".repeat(5001);
    let long_prefix = format!("{}b/key", "a.".repeat(127));

    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // -- malformed bodies --
        bad_request("acquire: malformed JSON", Method::POST, &acq, r#"{"holder": "svc/a","#),
        bad_request("patch: malformed JSON", Method::PATCH, &md, r#"{"metadata": "#).header(tok, t1),
        bad_request("renew: malformed JSON", Method::POST, &renew, "{"),
        bad_request("delete: malformed JSON", Method::DELETE, &p, r#"{"expect":"#).header(tok, t1),
        bad_request("acquire: empty body", Method::POST, &acq, ""),
        bad_request("patch: empty body", Method::PATCH, &md, "").header(tok, t1),
        bad_request("acquire: JSON array", Method::POST, &acq, "[]"),
        bad_request("acquire: JSON number", Method::POST, &acq, "5"),
        bad_request("acquire: JSON null", Method::POST, &acq, "null"),
        bad_request("patch: JSON array", Method::PATCH, &md, r#"[{"metadata": {}}]"#).header(tok, t1),
        bad_request("patch: JSON number", Method::PATCH, &md, "42").header(tok, t1),
        bad_request("renew: JSON array", Method::POST, &renew, "[]"),
        bad_request("delete: JSON number", Method::DELETE, &p, "5").header(tok, t1),
        bad_request("acquire: trailing garbage", Method::POST, &acq, r#"{"holder": "svc/a"} x"#),
        bad_request("acquire: duplicate member", Method::POST, &acq, r#"{"holder": "svc/a", "holder": "svc/b"}"#),
        bad_request("patch: invalid UTF-8", Method::PATCH, &md, b"{\"metadata\": {\"labels\": {\"a\": \"\xff\"}}}".to_vec()).header(tok, t1),
        bad_request("patch: no metadata member", Method::PATCH, &md, r#"{"expect": {}}"#).header(tok, t1),
        // -- arrays in place of objects (serde would read them positionally) --
        bad_request("acquire: JSON array of the fields", Method::POST, &acq, r#"["svc/a", 60]"#),
        bad_request("renew: JSON array of the fields", Method::POST, &renew, "[60]"),
        bad_request("delete: JSON array of the fields", Method::DELETE, &p, r#"[{"labels": {"a": "nope"}}]"#).header(tok, t1),
        bad_request("patch: expect an empty array", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}, "expect": []}"#).header(tok, t1),
        bad_request("patch: expect an array of the fields", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}, "expect": [{"a": "9"}]}"#).header(tok, t1),
        bad_request("patch: expect a string", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}, "expect": "a"}"#).header(tok, t1),
        // -- unknown fields --
        bad_request("acquire: unknown field", Method::POST, &acq, r#"{"holder": "svc/a", "foo": 1}"#),
        bad_request("renew: unknown field", Method::POST, &renew, r#"{"ttl_seconds": 30, "foo": 1}"#),
        bad_request("patch: unknown field", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}, "foo": 1}"#).header(tok, t1),
        bad_request("delete: unknown field", Method::DELETE, &p, r#"{"expect": {}, "foo": 1}"#).header(tok, t1),
        bad_request("patch: unknown field in expect", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}, "expect": {"labels": {}, "foo": {}}}"#).header(tok, t1),
        bad_request("delete: unknown field in expect", Method::DELETE, &p, r#"{"expect": {"tags": {}}}"#).header(tok, t1),
        bad_request("patch: expect value not a string", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}, "expect": {"labels": {"a": 1}}}"#).header(tok, t1),
        // -- wrong types and ranges --
        bad_request("acquire: ttl as string", Method::POST, &acq, r#"{"holder": "svc/a", "ttl_seconds": "30"}"#),
        bad_request("acquire: ttl -1", Method::POST, &acq, r#"{"holder": "svc/a", "ttl_seconds": -1}"#),
        bad_request("acquire: ttl 1.5", Method::POST, &acq, r#"{"holder": "svc/a", "ttl_seconds": 1.5}"#),
        bad_request("acquire: ttl 0", Method::POST, &acq, r#"{"holder": "svc/a", "ttl_seconds": 0}"#),
        bad_request("acquire: ttl 3601", Method::POST, &acq, r#"{"holder": "svc/a", "ttl_seconds": 3601}"#),
        bad_request("acquire: ttl beyond u64", Method::POST, &acq, r#"{"holder": "svc/a", "ttl_seconds": 18446744073709551616}"#),
        bad_request("acquire: holder 5", Method::POST, &acq, r#"{"holder": 5}"#),
        bad_request("acquire: holder null", Method::POST, &acq, r#"{"holder": null}"#),
        bad_request("acquire: holder missing", Method::POST, &acq, r#"{"ttl_seconds": 30}"#),
        bad_request("acquire: holder empty", Method::POST, &acq, r#"{"holder": ""}"#),
        bad_request("acquire: holder 129 chars", Method::POST, &acq, json!({"holder": holder_129}).to_string()),
        bad_request("acquire: holder with newline", Method::POST, &acq, json!({"holder": "svc/\na"}).to_string()),
        bad_request("acquire: holder with NUL", Method::POST, &acq, json!({"holder": "svc/\u{0}a"}).to_string()),
        bad_request("acquire: holder with DEL", Method::POST, &acq, json!({"holder": "svc/\u{7f}a"}).to_string()),
        bad_request("acquire: wait_seconds 61", Method::POST, &acq, r#"{"holder": "svc/a", "wait_seconds": 61}"#),
        bad_request("acquire: wait_seconds -1", Method::POST, &acq, r#"{"holder": "svc/a", "wait_seconds": -1}"#),
        bad_request("acquire: lock_delay_seconds 61", Method::POST, &acq, r#"{"holder": "svc/a", "lock_delay_seconds": 61}"#),
        bad_request("acquire: lock_delay_seconds as string", Method::POST, &acq, r#"{"holder": "svc/a", "lock_delay_seconds": "0"}"#),
        bad_request("renew: ttl as string", Method::POST, &renew, r#"{"ttl_seconds": "30"}"#),
        bad_request("renew: ttl -1", Method::POST, &renew, r#"{"ttl_seconds": -1}"#),
        bad_request("renew: ttl 1.5", Method::POST, &renew, r#"{"ttl_seconds": 1.5}"#),
        bad_request("renew: ttl 0", Method::POST, &renew, r#"{"ttl_seconds": 0}"#),
        bad_request("renew: ttl 3601", Method::POST, &renew, r#"{"ttl_seconds": 3601}"#),
        // -- bad path parameters --
        case("get: type 'route'", Method::GET, &format!("/v1/resources/route/{guid}"), "", 400, "invalid-resource-type").content_type(None),
        case("get: type 'Routes'", Method::GET, &format!("/v1/resources/Routes/{guid}"), "", 400, "invalid-resource-type").content_type(None),
        case("acquire: type 'route'", Method::POST, &format!("/v1/resources/route/{guid}/lease"), r#"{"holder": "svc/a"}"#, 400, "invalid-resource-type"),
        case("patch: type 'Routes'", Method::PATCH, &format!("/v1/resources/Routes/{guid}/metadata"), r#"{"metadata": {"labels": {"a": "2"}}}"#, 400, "invalid-resource-type").header(tok, t1),
        case("delete: type 'route'", Method::DELETE, &format!("/v1/resources/route/{guid}"), "", 400, "invalid-resource-type").content_type(None).header(tok, t1),
        case("lease: type 'route'", Method::GET, &format!("/v1/resources/route/{guid}/lease"), "", 400, "invalid-resource-type").content_type(None),
        case("history: type 'Routes'", Method::GET, &format!("/v1/resources/Routes/{guid}/history"), "", 400, "invalid-resource-type").content_type(None),
        case("get: guid 'nope'", Method::GET, "/v1/resources/routes/nope", "", 400, "invalid-guid").content_type(None),
        case("get: guid of 32 hex digits", Method::GET, &format!("/v1/resources/routes/{hex32}"), "", 400, "invalid-guid").content_type(None),
        case("get: guid in braces", Method::GET, &format!("/v1/resources/routes/%7B{guid}%7D"), "", 400, "invalid-guid").content_type(None),
        case("acquire: guid 'nope'", Method::POST, "/v1/resources/routes/nope/lease", r#"{"holder": "svc/a"}"#, 400, "invalid-guid"),
        case("patch: guid of 32 hex digits", Method::PATCH, &format!("/v1/resources/routes/{hex32}/metadata"), r#"{"metadata": {"labels": {"a": "2"}}}"#, 400, "invalid-guid").header(tok, t1),
        case("delete: guid of 32 hex digits", Method::DELETE, &format!("/v1/resources/routes/{hex32}"), "", 400, "invalid-guid").content_type(None).header(tok, t1),
        case("history: guid 'nope'", Method::GET, "/v1/resources/routes/nope/history", "", 400, "invalid-guid").content_type(None),
        bad_request("get lease: malformed id", Method::GET, "/v1/leases/not-a-uuid", "").content_type(None),
        bad_request("renew: malformed id", Method::POST, "/v1/leases/123/renew", ""),
        bad_request("release: malformed id", Method::DELETE, "/v1/leases/xyz", "").content_type(None),
        bad_request("release: the lease's id without hyphens", Method::DELETE, &format!("/v1/leases/{}", id.replace('-', "")), "").content_type(None),
        bad_request("renew: the lease's id without hyphens", Method::POST, &format!("/v1/leases/{}/renew", id.replace('-', "")), ""),
        // -- bad headers --
        bad_request("patch: Fencing-Token abc", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, "abc"),
        bad_request("patch: Fencing-Token 0", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, "0"),
        bad_request("patch: Fencing-Token -1", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, "-1"),
        bad_request("patch: Fencing-Token 1.0", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, "1.0"),
        bad_request("patch: Fencing-Token +1", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, "+1"),
        bad_request("patch: Fencing-Token huge", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, "99999999999999999999999"),
        bad_request("patch: Fencing-Token empty", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, ""),
        bad_request("patch: two Fencing-Tokens", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header(tok, t1),
        bad_request("delete: Fencing-Token abc", Method::DELETE, &p, "").content_type(None).header(tok, "abc"),
        bad_request("patch: If-Match unquoted", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header("If-Match", "1"),
        bad_request("patch: If-Match 3 unquoted", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header("If-Match", "3"),
        bad_request("patch: If-Match \"3 (one quote)", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header("If-Match", "\"3"),
        bad_request("patch: If-Match missing a quote", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header("If-Match", "\"1"),
        bad_request("patch: If-Match weak unquoted", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header("If-Match", "W/1"),
        bad_request("patch: If-Match with a space inside", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#).header(tok, t1).header("If-Match", "\"a b\""),
        bad_request("delete: If-Match unquoted", Method::DELETE, &p, "").content_type(None).header(tok, t1).header("If-Match", "1"),
        bad_request("get: If-None-Match unquoted", Method::GET, &p, "").content_type(None).header("If-None-Match", "1"),
        bad_request("get: If-None-Match missing a quote", Method::GET, &p, "").content_type(None).header("If-None-Match", "\"1"),
        // -- size and media type: 413, then 415, then 400 --
        case("patch: body over 1 MiB", Method::PATCH, &md, over_1mib.clone(), 413, "payload-too-large").header(tok, t1),
        case("acquire: body over 1 MiB", Method::POST, &acq, format!(r#"{{"holder": "svc/a", "x": "{}"}}"#, "y".repeat(1024 * 1024)), 413, "payload-too-large"),
        case("patch: text/plain body over 1 MiB (413 before 415)", Method::PATCH, &md, over_1mib.clone(), 413, "payload-too-large").header(tok, t1).content_type(Some("text/plain")),
        case("patch: malformed body over 1 MiB (413 before 400)", Method::PATCH, &md, format!("{{{}", "x".repeat(1024 * 1024 + 1)), 413, "payload-too-large").header(tok, t1),
        case("patch: a body of exactly 1 MiB is read (422, not 413)", Method::PATCH, &md, exactly_1mib.clone(), 422, "invalid-metadata").errors(&[big_annotation_message]),
        case("patch: text/plain", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#, 415, "unsupported-media-type").header(tok, t1).content_type(Some("text/plain")),
        case("patch: no content type", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#, 415, "unsupported-media-type").header(tok, t1).content_type(None),
        case("patch: application/xml", Method::PATCH, &md, "<metadata/>", 415, "unsupported-media-type").header(tok, t1).content_type(Some("application/xml")),
        case("acquire: text/plain", Method::POST, &acq, r#"{"holder": "svc/a"}"#, 415, "unsupported-media-type").content_type(Some("text/plain")),
        case("renew: text/plain", Method::POST, &renew, r#"{"ttl_seconds": 60}"#, 415, "unsupported-media-type").content_type(Some("text/plain")),
        case("delete: text/plain", Method::DELETE, &p, r#"{"expect": {}}"#, 415, "unsupported-media-type").header(tok, t1).content_type(Some("text/plain")),
        case("acquire: malformed text/plain (415 before 400)", Method::POST, &acq, "{holder", 415, "unsupported-media-type").content_type(Some("text/plain")),
        case("acquire: text/plain on a bad type (415 before 400)", Method::POST, &format!("/v1/resources/route/{guid}/lease"), r#"{"holder": "svc/a"}"#, 415, "unsupported-media-type").content_type(Some("text/plain")),
        // -- metadata values of the wrong type: 400 --
        bad_request("patch: label value 5", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": 5}}}"#).header(tok, t1),
        bad_request("patch: label value true", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": true}}}"#).header(tok, t1),
        bad_request("patch: label value object", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": {"b": "c"}}}}"#).header(tok, t1),
        bad_request("patch: label value array", Method::PATCH, &md, r#"{"metadata": {"labels": {"a": ["1"]}}}"#).header(tok, t1),
        bad_request("patch: annotation value 5", Method::PATCH, &md, r#"{"metadata": {"annotations": {"n": 5}}}"#).header(tok, t1),
        bad_request("patch: annotation value false", Method::PATCH, &md, r#"{"metadata": {"annotations": {"n": false}}}"#).header(tok, t1),
        bad_request("patch: NUL in a label value", Method::PATCH, &md, json!({"metadata": {"labels": {"a": "x\u{0}y"}}}).to_string()).header(tok, t1),
        bad_request("patch: NUL in an annotation value", Method::PATCH, &md, json!({"metadata": {"annotations": {"n": "x\u{0}y"}}}).to_string()).header(tok, t1),
        bad_request("patch: NUL in a label key", Method::PATCH, &md, json!({"metadata": {"labels": {"a\u{0}b": "1"}}}).to_string()).header(tok, t1),
        bad_request("patch: a wrong type beats CC's key error (400 before 422)", Method::PATCH, &md, r#"{"metadata": {"labels": {"a b": "1", "c": 5}}}"#).header(tok, t1),
        bad_request("patch: malformed If-Match beats CC's key error (400 before 422)", Method::PATCH, &md, r#"{"metadata": {"labels": {"a b": "1"}}}"#).header(tok, t1).header("If-Match", "1"),
        // -- CC's validator: 422 with CC's messages (no token sent: 422 comes before 423) --
        cc_refuses("patch: metadata a string", &md, json!("x"), &["must be an object"]),
        cc_refuses("patch: metadata an array", &md, json!([]), &["must be an object"]),
        cc_refuses("patch: metadata null", &md, json!(null), &["must be an object"]),
        cc_refuses("patch: labels an array", &md, json!({"labels": []}), &["'labels' is not an object"]),
        cc_refuses("patch: labels a string", &md, json!({"labels": "a=1"}), &["'labels' is not an object"]),
        cc_refuses("patch: annotations a number", &md, json!({"annotations": 5}), &["'annotations' is not an object"]),
        cc_refuses("patch: unknown key in metadata", &md, json!({"foo": {}}), &["has unexpected field(s): 'foo'"]),
        cc_refuses("patch: two unknown keys in metadata", &md, json!({"foo": 1, "labels": {}, "bar": 2}), &["has unexpected field(s): 'foo' 'bar'"]),
        cc_refuses("patch: label key with a space", &md, json!({"labels": {"a b": "1"}}), &["label key error: 'a b' contains invalid characters"]),
        cc_refuses("patch: reserved prefix", &md, json!({"labels": {"cloudfoundry.org/x": "1"}}), &["label key error: prefix 'cloudfoundry.org' is reserved"]),
        cc_refuses("patch: reserved prefix in capitals", &md, json!({"labels": {"CloudFoundry.ORG/x": "1"}}), &["label key error: prefix 'cloudfoundry.org' is reserved"]),
        cc_refuses("patch: prefix not a DNS name", &md, json!({"labels": {"onlycom/key": "1"}}), &["label key error: prefix 'onlycom' must be in valid dns format"]),
        cc_refuses("patch: prefix over 253 chars", &md, json!({"labels": {long_prefix.clone(): "1"}}), &["label key error: prefix 'a.a.a.a....' is greater than 253 characters"]),
        cc_refuses("patch: two slashes", &md, json!({"labels": {"a.com/b/c": "1"}}), &["label key error: key has more than one '/'"]),
        cc_refuses("patch: label key of 64 chars", &md, json!({"labels": {a64.clone(): "1"}}), &["label key error: 'aaaaaaaa...' is greater than 63 characters"]),
        cc_refuses("patch: label value starting with '-'", &md, json!({"labels": {"a": "-bad"}}), &["label value error: '-bad' starts or ends with invalid characters"]),
        cc_refuses("patch: label value with a space", &md, json!({"labels": {"a": "has space"}}), &["label value error: 'has space' contains invalid characters"]),
        cc_refuses("patch: label value of 64 chars", &md, json!({"labels": {"a": a64.clone()}}), &["label value error: 'aaaaaaaa...' is greater than 63 characters"]),
        cc_refuses("patch: annotation value of 5001 chars", &md, json!({"annotations": {"n": x5001.clone()}}), &[big_annotation_message]),
        cc_refuses("patch: annotation key of 64 chars with a blank value", &md, json!({"annotations": {b64.clone(): ""}}), &["annotation key error: 'bbbbbbbb...' is greater than 63 characters"]),
        cc_refuses("patch: annotation key with a space", &md, json!({"annotations": {"a b": "v"}}), &["annotation key error: 'a b' contains invalid characters"]),
        cc_refuses(
            "patch: several errors in CC's order",
            &md,
            json!({"annotations": {"a b": "v"}, "labels": {"": "mashed", "/potato": ".value."}, "foo": 1}),
            &[
                "has unexpected field(s): 'foo'",
                "label key error: key cannot be empty string",
                "label key error: prefix '' must be in valid dns format",
                "label value error: '.value.' starts or ends with invalid characters",
                "annotation key error: 'a b' contains invalid characters",
            ],
        ),
        // -- query strings --
        bad_request("list: unknown parameter", Method::GET, "/v1/leases?foo=1", "").content_type(None),
        bad_request("list: limit 0", Method::GET, "/v1/leases?limit=0", "").content_type(None),
        bad_request("list: limit 1001", Method::GET, "/v1/leases?limit=1001", "").content_type(None),
        bad_request("list: limit x", Method::GET, "/v1/leases?limit=x", "").content_type(None),
        bad_request("list: limit -1", Method::GET, "/v1/leases?limit=-1", "").content_type(None),
        bad_request("list: bad cursor", Method::GET, "/v1/leases?cursor=bad!", "").content_type(None),
        bad_request("list: cursor of another listing", Method::GET, "/v1/leases?cursor=c2VxOjM", "").content_type(None),
        bad_request("list: state bogus", Method::GET, "/v1/leases?state=bogus", "").content_type(None),
        bad_request("list: holder empty", Method::GET, "/v1/leases?holder=", "").content_type(None),
        bad_request("list: holder 129 chars", Method::GET, &format!("/v1/leases?holder={holder_129}"), "").content_type(None),
        case("list: type bogus", Method::GET, "/v1/leases?type=bogus", "", 400, "invalid-resource-type").content_type(None),
        case("list: type Routes", Method::GET, "/v1/leases?type=Routes", "", 400, "invalid-resource-type").content_type(None),
        case("list: guid nope", Method::GET, "/v1/leases?guid=nope", "", 400, "invalid-guid").content_type(None),
        bad_request("history: unknown parameter", Method::GET, &format!("{hist}?foo=1"), "").content_type(None),
        bad_request("history: limit 0", Method::GET, &format!("{hist}?limit=0"), "").content_type(None),
        bad_request("history: limit 1001", Method::GET, &format!("{hist}?limit=1001"), "").content_type(None),
        bad_request("history: limit x", Method::GET, &format!("{hist}?limit=x"), "").content_type(None),
        bad_request("history: bad cursor", Method::GET, &format!("{hist}?cursor=bad!"), "").content_type(None),
        bad_request("history: cursor of another listing", Method::GET, &format!("{hist}?cursor=eDp5"), "").content_type(None),
        // -- routes and methods --
        case("unknown route", Method::GET, "/v1/nope", "", 404, "not-found").content_type(None),
        case("unknown route under a resource", Method::GET, &format!("{p}/nope"), "", 404, "not-found").content_type(None),
        case("collection of resources", Method::GET, "/v1/resources/routes", "", 404, "not-found").content_type(None),
        case("PUT /v1/leases", Method::PUT, "/v1/leases", "", 405, "method-not-allowed").content_type(None).allow("GET"),
        case("DELETE /v1/leases", Method::DELETE, "/v1/leases", "", 405, "method-not-allowed").content_type(None).allow("GET"),
        case("POST to a resource", Method::POST, &p, r#"{"holder": "svc/a"}"#, 405, "method-not-allowed").allow("GET"),
        case("PUT metadata", Method::PUT, &md, r#"{"metadata": {"labels": {"a": "2"}}}"#, 405, "method-not-allowed").header(tok, t1).allow("PATCH"),
        case("PATCH a lease", Method::PATCH, &lease_path, r#"{"ttl_seconds": 60}"#, 405, "method-not-allowed").allow("DELETE"),
        case("GET renew", Method::GET, &renew, "", 405, "method-not-allowed").content_type(None).allow("POST"),
        case("POST /healthz", Method::POST, "/healthz", "", 405, "method-not-allowed").content_type(None).allow("GET"),
        // -- a body where none is expected (last: if it is ignored, the lease is gone) --
        case("release: text/plain body", Method::DELETE, &lease_path, "please", 415, "unsupported-media-type").content_type(Some("text/plain")),
    ];

    let mut failures = Vec::new();
    for c in &cases {
        let before = snapshot(&app, &res).await;
        let mut req = app.client.request(c.method.clone(), app.url(&c.path));
        for (name, value) in &c.headers {
            req = req.header(*name, value.as_str());
        }
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if !c.body.is_empty() || c.content_type.is_some() {
            req = req.body(c.body.clone());
        }
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: request failed: {e}", c.name));
                continue;
            }
        };
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        if status != c.status {
            let text = r.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            failures.push(format!(
                "{}: {} {} answered {status}, expected {} {}: {text}",
                c.name, c.method, c.path, c.status, c.code
            ));
        } else {
            // assert_problem checks content type, type, status, title and detail; run it
            // in a task so one failure does not hide the others.
            let checked = tokio::spawn(assert_problem(r, c.status, c.code)).await;
            match checked {
                Ok(body) => {
                    if let Some(errors) = &c.errors
                        && body["errors"] != json!(errors)
                    {
                        failures.push(format!(
                            "{}: errors {} , expected {errors:?}",
                            c.name, body["errors"]
                        ));
                    }
                }
                Err(e) => failures.push(format!("{}: {}", c.name, panic_text(e))),
            }
            if let Some(method) = c.allow {
                let listed = allow
                    .as_deref()
                    .is_some_and(|a| a.split(',').any(|m| m.trim().eq_ignore_ascii_case(method)));
                if !listed {
                    failures.push(format!(
                        "{}: Allow header {allow:?} does not list {method}",
                        c.name
                    ));
                }
            }
        }
        let after = snapshot(&app, &res).await;
        if after != before {
            failures.push(format!(
                "{}: the resource changed:\n  before {before:?}\n  after  {after:?}",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The setup is intact: the holder can still write with its token.
    let r = app
        .set_labels(&res, json!({"a": "2"}), Some(token), Some("\"1\""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

// ---- helpers of this file ----

/// Everything a bad request must leave as it was: the resource (status, version, metadata,
/// lease, fence), its ETag, its whole history, and every lease in the database.
async fn snapshot(app: &TestApp, res: &Res) -> (u16, Option<String>, Value, Vec<Value>, Value) {
    let r = app.get(&res.path()).await;
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body: Value = r.json().await.expect("resource JSON");
    let history = app.history(res).await;
    let r = app.get("/v1/leases?state=all&limit=1000").await;
    assert_eq!(r.status(), StatusCode::OK);
    let leases: Value = r.json().await.expect("lease list");
    (status, etag, body, history, leases["items"].clone())
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned()),
        Err(e) => e.to_string(),
    }
}
