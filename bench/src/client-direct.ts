// One short-lived process doing the whole exchange itself, as applications on
// OCI do without the daemon: oci-common's instance principal, an identity-domain
// token exchange signed with oci-common's request signer, then google-auth-library's
// IdentityPoolClient with that JWT as the subject token and impersonation.
import { IdentityPoolClient } from "google-auth-library";
import common from "oci-common";

// Reports the CPU time this process used (all its threads) as the last line of its output.
process.on("exit", () => {
  const u = process.cpuUsage();
  process.stdout.write(`\ncpu-ms ${(u.user + u.system) / 1000}\n`);
});

const e = process.env;
const FORM_CT = "application/x-www-form-urlencoded;charset=utf-8";
const BODY =
  "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&scope=urn:opc:idm:__myscopes__" +
  "&requested_token_type=urn:ietf:params:oauth:token-type:access_token";

const builder = new common.InstancePrincipalsAuthenticationDetailsProviderBuilder();
builder.metadataBaseUrl = e.BENCH_OCI_METADATA_URL!;
builder.federationEndpoint = e.BENCH_OCI_FEDERATION_URL!;
const provider = await builder.build();

const uri = `${e.BENCH_DOMAIN_URL}/oauth2/v1/token`;
const req = { method: "POST", uri, headers: new Headers({ "content-type": FORM_CT }), body: BODY };
await new common.DefaultRequestSigner(provider).signHttpRequest(req as never);
const res = await fetch(uri, { method: "POST", headers: req.headers, body: BODY });
if (res.status !== 200) throw new Error(`identity domain: HTTP ${res.status}`);
const jwt = ((await res.json()) as { access_token: string }).access_token;

const client = new IdentityPoolClient({
  audience: e.BENCH_AUDIENCE!,
  subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
  token_url: e.BENCH_STS_URL!,
  service_account_impersonation_url: e.BENCH_IMPERSONATION_URL!,
  subject_token_supplier: { getSubjectToken: async () => jwt },
});
const { token } = await client.getAccessToken();
if (!token) throw new Error("no token");
