// An OpenID provider for the single sign-on tests: panva's `oidc-provider` (OpenID Certified),
// installed by scripts/services in /opt/offshoot-npm, configured here and nothing more. Its own
// development sign-in pages take any login and password; the account is the login typed.
//
// Environment: OIDC_PROVIDER_MODULE (the package's entry), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
// OIDC_ACCOUNTS (a JSON file `{"email": {"groups": [...]}}`, read at every sign-in so a test can
// change someone's groups). It listens on a port the kernel picks and prints
// `issuer http://127.0.0.1:PORT` once it does.
import http from 'node:http';
import fs from 'node:fs';

const { default: Provider } = await import(process.env.OIDC_PROVIDER_MODULE);

const accounts = () => JSON.parse(fs.readFileSync(process.env.OIDC_ACCOUNTS, 'utf8'));

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const plain = (title, body) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    // A loopback redirect URI matches any port (RFC 8252 7.3): the dashboard's port is the kernel's choice.
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/ui/sso/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/ui/login'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  async findAccount(ctx, id) {
    const known = accounts()[id] ?? {};
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: known.email_verified ?? true, groups: known.groups ?? [] };
      },
    };
  },
  cookies: { keys: ['offshoot-test-cookie-key'] },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = plain('Sign out', `<main>${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button></main>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = plain('Signed out', '<main>Signed out.</main>');
      },
    },
  },
});

// The provider's pages load nothing from elsewhere (their stock style imports a web font).
provider.use(async (ctx, next) => {
  await next();
  ctx.set('Content-Security-Policy', "default-src 'self' 'unsafe-inline'");
});
server.on('request', provider.callback());
console.log(`issuer ${issuer}`);
