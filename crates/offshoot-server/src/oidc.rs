//! The dashboard's OpenID Connect relying party (`openidconnect`): the provider discovered and
//! its metadata kept an hour, an authorization request with a fresh state, nonce and PKCE code
//! challenge, the code exchanged and the ID token checked (signature, issuer, audience, nonce,
//! access-token hash), the e-mail address and groups read (from the ID token, else the
//! userinfo endpoint), and the provider's end-session URL. The HTTP side is `sso`.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use offshoot_control::Role;
use offshoot_control::sso::{SsoIdentity, SsoPolicy};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreGenderClaim};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse as _,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long a sign-in may take at the provider.
pub(crate) const FLOW_SECS: i64 = 600;
/// How long discovered provider metadata (endpoints, signing keys) is used before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// Single sign-on as `offshoot server --oidc-*` configures it.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery at `/.well-known/openid-configuration` below it).
    pub issuer: String,
    pub client_id: String,
    /// None for a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// E-mail domains whose users are made at their first sign-in.
    pub allowed_domains: Vec<String>,
    /// `admin`, `developer` or `viewer`.
    pub default_role: String,
    /// The claim holding the user's groups.
    pub role_claim: String,
    pub admin_group: Option<String>,
    pub developer_group: Option<String>,
    /// Scopes asked for (`openid` is always among them).
    pub scopes: Vec<String>,
}

/// This server's relying party.
pub(crate) struct Sso {
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: Option<ClientSecret>,
    scopes: Vec<String>,
    role_claim: String,
    pub(crate) policy: SsoPolicy,
    http: reqwest::Client,
    redirect: RedirectUrl,
    after_logout: PostLogoutRedirectUrl,
    /// Whether the dashboard is served over TLS (cookies get `Secure`).
    pub(crate) secure: bool,
    /// The provider's origin, which the dashboard's forms may lead to (sign-out).
    origin: String,
    metadata: tokio::sync::Mutex<Option<(ProviderMetadataWithLogout, Instant)>>,
}

/// What the flow cookie carries from the start of a sign-in to its end.
#[derive(Serialize, Deserialize)]
pub(crate) struct Flow {
    pub(crate) state: String,
    nonce: String,
    verifier: String,
    pub(crate) next: String,
    pub(crate) expires: i64,
}

/// Claims beyond the standard ones (the groups claim among them), as the userinfo endpoint sends them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct Extra(serde_json::Map<String, serde_json::Value>);
impl AdditionalClaims for Extra {}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

impl Sso {
    /// Checks the settings: an `https` issuer (`http` only on loopback), a client id, known
    /// roles; the callback is under `public_url`.
    pub(crate) fn new(c: &OidcConfig, public_url: &str) -> anyhow::Result<Sso> {
        let issuer_url = url::Url::parse(&c.issuer).with_context(|| format!("--oidc-issuer `{}` is not a URL", c.issuer))?;
        if issuer_url.scheme() != "https" && !(issuer_url.scheme() == "http" && is_loopback(&issuer_url)) {
            bail!("--oidc-issuer `{}` must be an https:// URL (plain http only on this machine's loopback)", c.issuer);
        }
        if c.client_id.trim().is_empty() {
            bail!("--oidc-client-id is empty");
        }
        let default_role = Role::parse(&c.default_role)
            .with_context(|| format!("--oidc-default-role `{}` is not a role: admin, developer or viewer", c.default_role))?;
        let mut allowed_domains = Vec::new();
        for d in &c.allowed_domains {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || !d.contains('.') || d.contains(['@', '/', ' ']) {
                bail!("--oidc-allowed-domains: `{d}` is not an e-mail domain (such as example.com)");
            }
            allowed_domains.push(d);
        }
        let public = public_url.trim_end_matches('/');
        let mut scopes: Vec<String> =
            c.scopes.iter().flat_map(|s| s.split([' ', ','])).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        scopes.retain(|s| s != "openid");
        let http = reqwest::Client::builder()
            // Following a redirect would let a provider's answer send this server elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .context("make the single sign-on HTTP client")?;
        Ok(Sso {
            // As the provider spells it (a trailing `/` too): discovery checks that the issuer
            // its document names is this one, exactly.
            issuer: IssuerUrl::new(c.issuer.clone()).context("--oidc-issuer")?,
            client_id: ClientId::new(c.client_id.trim().to_owned()),
            secret: c.client_secret.clone().filter(|s| !s.is_empty()).map(ClientSecret::new),
            scopes,
            role_claim: c.role_claim.clone(),
            policy: SsoPolicy {
                allowed_domains,
                default_role,
                admin_group: c.admin_group.clone().filter(|g| !g.is_empty()),
                developer_group: c.developer_group.clone().filter(|g| !g.is_empty()),
            },
            http,
            redirect: RedirectUrl::new(format!("{public}/ui/sso/callback")).context("--public-url")?,
            after_logout: PostLogoutRedirectUrl::new(format!("{public}/ui/login")).context("--public-url")?,
            secure: public.starts_with("https://"),
            origin: issuer_url.origin().ascii_serialization(),
            metadata: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider's origin (for the dashboard's `form-action`).
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The provider's metadata: discovered at the first use, again once an hour, and again
    /// after a failure.
    async fn metadata(&self) -> Result<ProviderMetadataWithLogout, String> {
        let mut held = self.metadata.lock().await;
        if let Some((m, at)) = held.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let m = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| format!("the identity provider `{}` cannot be discovered: {}", self.issuer.as_str(), chain(&e)))?;
        *held = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    fn client(
        &self,
        m: ProviderMetadataWithLogout,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(m, self.client_id.clone(), self.secret.clone()).set_redirect_uri(self.redirect.clone())
    }

    /// Where to send the browser, and the flow to keep in its cookie.
    pub(crate) async fn begin(&self, next: &str) -> Result<(url::Url, Flow), String> {
        let client = self.client(self.metadata().await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for s in &self.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let flow = Flow {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: next.to_owned(),
            expires: offshoot_store::now_ms() / 1000 + FLOW_SECS,
        };
        Ok((url, flow))
    }

    /// The identity a returned code proves.
    pub(crate) async fn finish(&self, code: &str, flow: Flow) -> Result<SsoIdentity, String> {
        let client = self.client(self.metadata().await?);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| format!("the identity provider has no token endpoint: {e}"))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| format!("the identity provider refused the sign-in's code: {}", chain(&e)))?;
        let id_token = tokens.id_token().ok_or("the identity provider sent no ID token")?;
        let verifier = client.id_token_verifier();
        let claims =
            id_token.claims(&verifier, &Nonce::new(flow.nonce)).map_err(|e| format!("the ID token is not valid: {}", chain(&e)))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|e| format!("the ID token is not valid: {e}"))?;
            let key = id_token.signing_key(&verifier).map_err(|e| format!("the ID token is not valid: {e}"))?;
            let actual =
                AccessTokenHash::from_token(tokens.access_token(), alg, key).map_err(|e| format!("the ID token is not valid: {e}"))?;
            if actual != *expected {
                return Err("the access token is not the one the ID token names".into());
            }
        }
        // The ID token is verified: its other claims (the groups claim) are read from its payload.
        let extra = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok())
            .unwrap_or_default();
        let mut who = SsoIdentity {
            email: claims.email().map(|e| e.as_str().to_owned()).unwrap_or_default(),
            email_verified: claims.email_verified(),
            groups: groups(extra.get(&self.role_claim)),
        };
        let wants_groups = self.policy.maps_groups() && who.groups.is_none();
        if (who.email.is_empty() || wants_groups)
            && let Ok(request) = client.user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
        {
            let info: UserInfoClaims<Extra, CoreGenderClaim> =
                request.request_async(&self.http).await.map_err(|e| format!("the identity provider's userinfo failed: {}", chain(&e)))?;
            if who.email.is_empty() {
                who.email = info.email().map(|e| e.as_str().to_owned()).unwrap_or_default();
                who.email_verified = info.email_verified();
            }
            if who.groups.is_none() {
                who.groups = groups(info.additional_claims().0.get(&self.role_claim));
            }
        }
        Ok(who)
    }

    /// Where signing out sends the browser: the provider's end-session endpoint, back to the
    /// login page; `None` when the provider has none.
    pub(crate) async fn logout_url(&self) -> Option<String> {
        let m = self.metadata().await.ok()?;
        let end = m.additional_metadata().end_session_endpoint.clone()?;
        let request = openidconnect::LogoutRequest::from(end)
            .set_client_id(self.client_id.clone())
            .set_post_logout_redirect_uri(self.after_logout.clone());
        Some(request.http_get_url().to_string())
    }
}

/// A groups claim: a list of names, or one name.
fn groups(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    match v? {
        serde_json::Value::Array(items) => Some(items.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect()),
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
