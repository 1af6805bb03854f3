// The function's work, kept apart from the FDK so that it runs (and is tested)
// without it: list the Cloud Storage buckets of a Google project, calling the
// JSON API with fetch and a bearer token from oci2gcp.

const READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only";

/**
 * @param {object} deps
 * @param {() => import("oci2gcp").OciGoogleCredentials} deps.credentials  made on first use
 * @param {typeof fetch} [deps.fetch]
 * @param {string} [deps.storageUrl]  the Cloud Storage JSON API
 * @returns {(input: unknown, ctx?: { config?: Record<string, string> }) => Promise<object>}
 */
export function createHandler({
  credentials,
  fetch: fetchImpl = globalThis.fetch,
  storageUrl = "https://storage.googleapis.com/storage/v1",
}) {
  return async function handler(input, ctx) {
    const creds = credentials();
    // The FDK parses a JSON body sent as application/json; parse one sent as text too.
    const body =
      typeof input === "string" && input.trim().startsWith("{") ? JSON.parse(input) : input && typeof input === "object" ? input : {};
    const project = body.project ?? ctx?.config?.GOOGLE_CLOUD_PROJECT ?? creds.config.google.projectId;
    if (!project) {
      throw new Error('no Google project: send {"project": "ID"} or set GOOGLE_CLOUD_PROJECT in the function configuration');
    }
    // An access token of the first configured service account (or the federated
    // token when none is configured), limited to reading Cloud Storage.
    const token = await creds.getAccessToken({ scopes: [READ_ONLY] });
    const url = new URL(`${storageUrl}/b`);
    url.searchParams.set("project", project);
    url.searchParams.set("fields", "items(name,location,storageClass)");
    const res = await fetchImpl(url, { headers: { authorization: `Bearer ${token.value}` } });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) {
      throw new Error(`Cloud Storage answered ${res.status}: ${answer.error?.message ?? res.statusText}`);
    }
    return { project, buckets: (answer.items ?? []).map((b) => ({ name: b.name, location: b.location, storageClass: b.storageClass })) };
  };
}
