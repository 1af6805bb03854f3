import t from "tap";
import { DEMO_SERVICE_ACCOUNT, startEmulators } from "../../src/emulator/index.js";
import { ConfigError, OciGoogleCredentials } from "../../src/index.js";
import { claimsOf } from "../helpers/stack.js";

t.test("in-process credentials from a resource principal, as in an OCI Function", async (t) => {
  const emu = await startEmulators();
  t.teardown(() => emu.close());
  const rp = emu.oci.mintResourcePrincipal();
  // The environment an OCI Function gets from its runtime, plus the chain's settings.
  const env = {
    OCI_RESOURCE_PRINCIPAL_VERSION: "2.2",
    OCI_RESOURCE_PRINCIPAL_RPST: rp.rpst,
    OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM: rp.privateKeyPem,
    OCI_RESOURCE_PRINCIPAL_REGION: rp.region,
    OCI_IAM_DOMAIN_URL: emu.oci.domainUrl,
    GCP_AUDIENCE: emu.google.audience,
    GCP_IMPERSONATION_URL: `${emu.google.iamCredentialsUrl}/v1/projects/-/serviceAccounts/${DEMO_SERVICE_ACCOUNT}:generateAccessToken`,
    OCI2GCP_STS_URL: emu.google.stsUrl,
    GOOGLE_CLOUD_PROJECT: "demo-project",
  };
  const creds = OciGoogleCredentials.fromEnvironment({ env });
  t.teardown(() => creds.close());
  t.equal(creds.config.oci.principal, "resource", "the resource principal is chosen inside a Function");
  t.equal(creds.config.google.iamCredentialsUrl, emu.google.iamCredentialsUrl, "IAM Credentials base taken from the impersonation URL");

  const subject = await creds.getSubjectToken();
  t.equal(subject.claims.sub_type, "resource");

  const [a, b] = await Promise.all([creds.getAccessToken(), creds.getAccessToken()]);
  t.equal(a.value, b.value, "one token for concurrent callers");
  const info = emu.google.tokenInfo(a.value);
  t.equal(info?.kind, "service_account");
  t.equal(info?.email, DEMO_SERVICE_ACCOUNT);

  const id = await creds.getIdToken("https://run.example.com", { includeEmail: true });
  const c = claimsOf(id.value);
  t.equal(c.aud, "https://run.example.com");
  t.equal(c.email, DEMO_SERVICE_ACCOUNT);

  // The AuthClient a @google-cloud/* client would use: it authenticates real requests.
  const client = creds.authClient();
  t.equal(client.projectId, "demo-project");
  const headers = await client.getRequestHeaders();
  t.equal(headers.get("authorization"), `Bearer ${a.value}`);
  const res = await client.request<{ azp?: string; scope?: string }>({ url: `${emu.google.tokenInfoUrl}`, method: "POST" });
  t.equal(res.status, 200);
  t.equal(res.data.azp, emu.google.uniqueId(DEMO_SERVICE_ACCOUNT), "the emulator accepted the bearer token as the service account's");
  const calls = (await (await fetch(`${emu.url}/_emulator/calls`)).json()) as Record<string, number>;
  t.equal(calls["google.sts.token"], 1, "one STS exchange");
  t.equal(calls["google.iam.generateAccessToken"], 1, "one impersonation");
});

t.test("a clear configuration error, not a stack", async (t) => {
  t.throws(() => OciGoogleCredentials.fromEnvironment({ env: {} }), ConfigError);
  try {
    OciGoogleCredentials.fromEnvironment({
      env: {
        OCI_IAM_DOMAIN_URL: "idcs-x.identity.oraclecloud.com",
        GCP_AUDIENCE: "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/p/providers/q",
      },
    });
    t.fail("should throw");
  } catch (e) {
    t.match((e as Error).message, /project NUMBER/);
  }
});
