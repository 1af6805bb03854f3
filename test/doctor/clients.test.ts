import t from "tap";
import { loadConfig } from "../../src/config/config.js";
import { clientWarnings, renderReport } from "../../src/doctor/doctor.js";

const BASE = {
  "identityDomain.url": "https://idcs-0123456789abcdef.identity.oraclecloud.com",
  "google.audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
};
const config = (o: Record<string, unknown>) => loadConfig({ env: {}, overrides: { ...BASE, ...o } });

t.test("doctor warns where a client will fail: no project id, no service account", async (t) => {
  t.equal(
    clientWarnings(config({ "google.projectId": "p", "google.serviceAccounts": ["a@p.iam.gserviceaccount.com"] })),
    undefined,
    "nothing to say",
  );
  const noProject = clientWarnings(config({ "google.serviceAccounts": ["a@p.iam.gserviceaccount.com"] }));
  t.equal(noProject?.status, "warn");
  t.match(noProject?.details.join("\n"), /no google\.projectId: gcloud raises on the 404 of project\/project-id/);
  t.match(noProject?.fix, /google\.projectId/);
  const noAccount = clientWarnings(config({ "google.projectId": "p" }));
  t.match(noAccount?.details.join("\n"), /no service account: .*some Google APIs refuse.*regional access boundary/);
  t.match(noAccount?.fix, /google\.serviceAccounts/);
  const both = clientWarnings(config({}))!;
  t.equal(both.details.length, 2, "both");
  t.match(renderReport({ ok: true, checks: [both] }), /WARN/);
});
