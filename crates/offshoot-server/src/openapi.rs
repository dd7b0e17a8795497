//! The API's OpenAPI description: the operations come from the handlers' `utoipa::path`
//! annotations as they are routed (`api::openapi`); this adds what every operation shares, the
//! bearer token and the error answers, once.

use offshoot_api_types::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// The security scheme's name: `Authorization: Bearer <token>`.
const BEARER: &str = "bearer";

/// The description's head: title, version, what it is.
pub(crate) fn base() -> OpenApi {
    let info = utoipa::openapi::InfoBuilder::new()
        .title("Offshoot API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Applications, their environments, datasets, users and tokens of one Offshoot server. Every \
             operation but the health check and this description needs `Authorization: Bearer <token>`; every \
             error answers with an `ErrorBody`.",
        ))
        .build();
    OpenApiBuilder::new().info(info).build()
}

/// The errors any operation may answer, beyond those it names: (status, name among the
/// description's shared responses, what it means); each an [`ErrorBody`].
const ERRORS: &[(&str, &str, &str)] = &[
    ("400", "BadRequest", "The request is malformed: a bad value, a query string that does not parse"),
    ("401", "Unauthorized", "No valid bearer token"),
    ("403", "Forbidden", "The caller's role does not allow it"),
    ("404", "NotFound", "What it names does not exist"),
    ("409", "Conflict", "It conflicts with the current state (try again, or once it is ready)"),
    ("422", "Unprocessable", "A configuration or body that is well formed but invalid, with diagnostics"),
    ("503", "Unavailable", "The server's database cannot answer for now"),
    ("507", "StorageFull", "The server's disk is full"),
];

/// More errors of an operation that takes a body.
const BODY_ERRORS: &[(&str, &str, &str)] =
    &[("413", "TooLarge", "The body is over the size limit"), ("415", "UnsupportedMediaType", "The body is not `application/json`")];

/// Adds the bearer scheme (required by every operation that does not say otherwise), the shared
/// error answers (once, as components every operation refers to), and the error body's schema.
pub(crate) fn complete(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(BEARER, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    for (_, name, description) in ERRORS.iter().chain(BODY_ERRORS) {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
        let response = ResponseBuilder::new().description(*description).content("application/json", body).build();
        components.responses.insert((*name).to_owned(), response.into());
    }
    doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
            add_errors(op);
        }
    }
    doc
}

fn add_errors(op: &mut Operation) {
    // `security(())`: open to anyone, and answering no error of its own.
    let public = op.security.as_ref().is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
    if public {
        return;
    }
    let body = if op.request_body.is_some() { BODY_ERRORS } else { &[] };
    for (status, name, _) in ERRORS.iter().chain(body) {
        if !op.responses.responses.contains_key(*status) {
            op.responses.responses.insert((*status).to_owned(), RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// `docs/openapi.json` is what the code describes: `OFFSHOOT_UPDATE_OPENAPI=1 cargo test -p
    /// offshoot-server openapi` writes it again after a change to the API.
    #[test]
    fn the_description_in_docs_is_the_one_the_code_makes() {
        let text = crate::api::openapi().to_pretty_json().expect("json") + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("OFFSHOOT_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &text).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "docs/openapi.json differs from the description the code makes: `OFFSHOOT_UPDATE_OPENAPI=1 cargo test -p offshoot-server openapi` writes it"
        );
    }

    #[test]
    fn every_operation_is_named_once_and_all_but_two_need_the_token() {
        let doc = serde_json::to_value(crate::api::openapi()).expect("json");
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        let mut ids = BTreeSet::new();
        let mut open = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let id = op["operationId"].as_str().expect("an operation id");
                assert!(ids.insert(id.to_owned()), "`{id}` names two operations");
                if op["security"] == serde_json::json!([{}]) {
                    open.push(format!("{method} {path}"));
                } else {
                    assert!(
                        op["responses"]["401"]["$ref"] == "#/components/responses/Unauthorized",
                        "{method} {path} does not say it answers 401"
                    );
                    assert!(op["responses"]["404"]["$ref"].is_string(), "{method} {path} does not say it answers 404");
                }
                if op.get("requestBody").is_some() {
                    assert!(op["responses"]["415"]["$ref"].is_string(), "{method} {path} takes a body and does not say 415");
                }
            }
        }
        assert_eq!(open, ["get /api/v1/openapi.json", "get /healthz"]);
        assert!(ids.len() >= 50, "{} operations", ids.len());
    }
}
