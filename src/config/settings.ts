/**
 * Every setting of oci2gcp, in one table: its place in the config file, its
 * environment variable, its command-line flag, its type and default. Loading,
 * validation, `--help` and the config reference in the README all read this.
 */

/** `json`: any JSON value, given in the config file only (structures with no environment or flag form); checked by its owner. */
export type SettingType = "string" | "int" | "bool" | "list" | "enum" | "json";

export interface Setting {
  /** Dotted path in the JSON config file, e.g. "google.audience". */
  path: string;
  env: readonly string[];
  flag?: string;
  type: SettingType;
  values?: readonly string[];
  default?: string | number | boolean | readonly string[];
  /** No default, and no configuration without it: what to give, and an example of it. */
  required?: { give: string; example: string };
  /** No default, but validation fills it in from this other setting when it is not given. */
  derivedFrom?: string;
  doc: string;
}

export const PRINCIPAL_KINDS = ["instance", "resource", "oke-workload", "config-file", "session"] as const;
export type PrincipalKind = (typeof PRINCIPAL_KINDS)[number];
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * The table, with its literal types kept: `Config` (config-type.ts) is derived from
 * it, so a setting exists in both or in neither.
 */
export const SETTING_TABLE = [
  // OCI principal
  {
    path: "oci.principal",
    env: ["OCI2GCP_PRINCIPAL"],
    flag: "--principal",
    type: "enum",
    values: PRINCIPAL_KINDS,
    default: "instance",
    doc: "Which OCI workload identity signs the identity-domain request.",
  },
  {
    path: "oci.metadataUrl",
    env: ["OCI2GCP_OCI_METADATA_URL"],
    type: "string",
    default: "http://169.254.169.254/opc/v2/",
    doc: "Instance metadata service (instance principal).",
  },
  {
    path: "oci.federationUrl",
    env: ["OCI2GCP_OCI_FEDERATION_URL"],
    type: "string",
    doc: "OCI auth service for instance-principal federation; by default derived from the instance's region.",
  },
  {
    path: "oci.configFile",
    env: ["OCI_CONFIG_FILE"],
    type: "string",
    default: "~/.oci/config",
    doc: "OCI config file (config-file and session principals).",
  },
  {
    path: "oci.profile",
    env: ["OCI_CLI_PROFILE", "OCI_CONFIG_PROFILE"],
    type: "string",
    default: "DEFAULT",
    doc: "Profile in the OCI config file.",
  },
  {
    path: "oci.resourcePrincipal.rpst",
    env: ["OCI_RESOURCE_PRINCIPAL_RPST"],
    type: "string",
    doc: "Resource principal session token, or an absolute path to a file holding it (re-read on renewal).",
  },
  {
    path: "oci.resourcePrincipal.privateKey",
    env: ["OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"],
    type: "string",
    doc: "Resource principal private key PEM, or an absolute path to it.",
  },
  {
    path: "oci.resourcePrincipal.passphrase",
    env: ["OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"],
    type: "string",
    doc: "Passphrase of the resource principal key, or an absolute path to it.",
  },
  {
    path: "oci.resourcePrincipal.region",
    env: ["OCI_RESOURCE_PRINCIPAL_REGION"],
    type: "string",
    doc: "Region of the resource principal.",
  },
  { path: "oci.oke.serviceHost", env: ["KUBERNETES_SERVICE_HOST"], type: "string", doc: "Kubernetes API host (OKE workload identity)." },
  { path: "oci.oke.proxymuxPort", env: ["KUBERNETES_SERVICE_PORT_PROXYMUX"], type: "int", default: 12250, doc: "OKE proxymux port." },
  {
    path: "oci.oke.caCertPath",
    env: ["OCI2GCP_OKE_CA_CERT"],
    type: "string",
    default: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    doc: "CA certificate the proxymux endpoint is verified with.",
  },
  {
    path: "oci.oke.tokenPath",
    env: ["OCI2GCP_OKE_SA_TOKEN"],
    type: "string",
    default: "/var/run/secrets/kubernetes.io/serviceaccount/token",
    doc: "Kubernetes service account token (re-read on renewal).",
  },
  // Identity domain
  {
    path: "identityDomain.url",
    env: ["OCI_IAM_DOMAIN_URL", "OCI2GCP_IDENTITY_DOMAIN_URL"],
    flag: "--domain-url",
    type: "string",
    required: { give: "the IAM identity domain URL", example: "e.g. https://idcs-0123456789abcdef.identity.oraclecloud.com" },
    doc: "IAM identity domain, as a URL or a host name (https is assumed).",
  },
  {
    path: "identityDomain.scope",
    env: ["OCI2GCP_IDENTITY_DOMAIN_SCOPE"],
    type: "string",
    default: "urn:opc:idm:__myscopes__",
    doc: "Scope asked for in the token exchange.",
  },
  // Google
  {
    path: "google.audience",
    env: ["GCP_AUDIENCE", "OCI2GCP_GCP_AUDIENCE"],
    flag: "--audience",
    type: "string",
    required: {
      give: "the workload identity pool provider",
      example: "//iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
    },
    doc: "Workload identity pool provider: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.",
  },
  {
    path: "google.serviceAccounts",
    env: ["OCI2GCP_SERVICE_ACCOUNTS"],
    flag: "--service-account",
    type: "list",
    default: [],
    doc: "Service accounts to impersonate, comma separated; the first is `default`. Empty: serve the federated token itself.",
  },
  {
    path: "google.impersonationUrl",
    env: ["GCP_IMPERSONATION_URL"],
    type: "string",
    doc: "A generateAccessToken URL (as in a credential file); its service account becomes the first one.",
  },
  {
    path: "google.projectId",
    env: ["GOOGLE_CLOUD_PROJECT", "OCI2GCP_PROJECT_ID"],
    flag: "--project",
    type: "string",
    doc: "Project id served by the metadata API.",
  },
  {
    path: "google.projectNumber",
    env: ["OCI2GCP_PROJECT_NUMBER"],
    type: "string",
    derivedFrom: "google.audience",
    doc: "Project number served by the metadata API; by default the one in the audience.",
  },
  {
    path: "google.scopes",
    env: ["OCI2GCP_SCOPES"],
    type: "list",
    default: ["https://www.googleapis.com/auth/cloud-platform"],
    doc: "Scopes of tokens asked for without ?scopes=.",
  },
  {
    path: "google.tokenLifetimeSeconds",
    env: ["OCI2GCP_TOKEN_LIFETIME_SECONDS"],
    type: "int",
    default: 3600,
    doc: "Lifetime asked for impersonated access tokens (max 3600 unless extended by policy).",
  },
  {
    path: "google.stsUrl",
    env: ["OCI2GCP_STS_URL"],
    type: "string",
    default: "https://sts.googleapis.com/v1/token",
    doc: "Google STS token endpoint.",
  },
  {
    path: "google.iamCredentialsUrl",
    env: ["OCI2GCP_IAM_CREDENTIALS_URL"],
    type: "string",
    default: "https://iamcredentials.googleapis.com",
    doc: "IAM Credentials API base URL.",
  },
  {
    path: "google.universeDomain",
    env: ["OCI2GCP_UNIVERSE_DOMAIN"],
    type: "string",
    default: "googleapis.com",
    doc: "Universe domain served by the metadata API.",
  },
  // Server
  {
    path: "server.host",
    env: ["OCI2GCP_HOST"],
    flag: "--host",
    type: "string",
    default: "127.0.0.1",
    doc: "Address to listen on (an IPv6 address with or without brackets: ::1 or [::1]). Anything but loopback also needs server.allowNonLoopback.",
  },
  { path: "server.port", env: ["OCI2GCP_PORT"], flag: "--port", type: "int", default: 8181, doc: "TCP port (0 picks a free one)." },
  {
    path: "server.allowNonLoopback",
    env: ["OCI2GCP_ALLOW_NON_LOOPBACK"],
    flag: "--allow-non-loopback",
    type: "bool",
    default: false,
    doc: "Permit a non-loopback listen address (logged as a warning).",
  },
  { path: "server.socketPath", env: ["OCI2GCP_SOCKET"], flag: "--socket", type: "string", doc: "Also listen on this Unix domain socket." },
  {
    path: "server.socketMode",
    env: ["OCI2GCP_SOCKET_MODE"],
    type: "string",
    default: "0660",
    doc: "File mode of the Unix socket (octal).",
  },
  {
    path: "server.maxRequestsPerMinute",
    env: ["OCI2GCP_MAX_REQUESTS_PER_MINUTE"],
    type: "int",
    default: 600000,
    doc: "Flood guard: HTTP requests per minute per client address. 0: no limit.",
  },
  {
    path: "server.upstreamBudgetPerMinute",
    env: ["OCI2GCP_UPSTREAM_BUDGET_PER_MINUTE"],
    type: "int",
    default: 120,
    doc:
      "Requests per minute and client address that may start new upstream calls (new scope sets or audiences, cache misses); " +
      "beyond it: 429. Cached answers are never counted. 0: no limit.",
  },
  {
    path: "server.maxCachedVariants",
    env: ["OCI2GCP_MAX_CACHED_VARIANTS"],
    type: "int",
    default: 256,
    doc: "Bound on cached scope sets and ID-token audiences per service account.",
  },
  // Per-user access
  {
    path: "server.socketGroup",
    env: ["OCI2GCP_SOCKET_GROUP"],
    type: "string",
    doc: "Group of the Unix socket file (a name or a numeric gid); with server.socketMode it decides who may connect to the socket.",
  },
  // Interception of the well-known address
  {
    path: "server.intercept",
    env: ["OCI2GCP_INTERCEPT"],
    type: "bool",
    default: false,
    doc:
      "Serve as the VM's metadata server at 169.254.169.254 (with `oci2gcp intercept install`): answer Google's paths, " +
      "relay every other request to OCI's instance metadata service (the origin of oci.metadataUrl) unchanged.",
  },
  // Connection limits
  {
    path: "server.maxConnections",
    env: ["OCI2GCP_MAX_CONNECTIONS"],
    type: "int",
    default: 1024,
    doc:
      "Open connections per listener (TCP, Unix socket); beyond it new connections are closed at once, " +
      "open ones keep being answered. 0: no limit.",
  },
  // Host names requests may carry
  {
    path: "server.allowedHosts",
    env: ["OCI2GCP_ALLOWED_HOSTS"],
    type: "list",
    default: [],
    doc:
      "More names or addresses a request's Host may carry (a Kubernetes Service name, a host alias), without port; " +
      "besides localhost, the listen address, metadata.google.internal and 169.254.169.254.",
  },
  // Token file
  {
    path: "tokenFile.path",
    env: ["OCI2GCP_TOKEN_FILE"],
    flag: "--token-file",
    type: "string",
    doc: "Keep the subject token (domain JWT) in this file, replaced atomically, mode 0600, for credential_source.file.",
  },
  {
    path: "tokenFile.refreshSeconds",
    env: ["OCI2GCP_TOKEN_FILE_REFRESH_SECONDS"],
    type: "int",
    default: 30,
    doc: "How often the token file is checked against the cache (the cache renews ahead of expiry).",
  },
  // Delegation chains
  {
    path: "google.delegates",
    env: ["OCI2GCP_DELEGATES"],
    type: "list",
    default: [],
    doc:
      "Delegation chains, one per service account: `EMAIL=DELEGATE1 DELEGATE2`, sent as IAM Credentials' `delegates`. " +
      "The federated identity may create tokens for DELEGATE1, each delegate for the next, the last for EMAIL.",
  },
  // Cache
  {
    path: "cache.renewBeforeSeconds",
    env: ["OCI2GCP_RENEW_BEFORE_SECONDS"],
    type: "int",
    default: 1200,
    doc: "Renew Google tokens this long before they expire.",
  },
  {
    path: "cache.minRemainingSeconds",
    env: ["OCI2GCP_MIN_REMAINING_SECONDS"],
    type: "int",
    default: 600,
    doc: "Never serve a Google token with less than this left.",
  },
  {
    path: "cache.subjectRenewBeforeSeconds",
    env: ["OCI2GCP_SUBJECT_RENEW_BEFORE_SECONDS"],
    type: "int",
    default: 600,
    doc: "Renew the domain JWT and the OCI session this long before expiry.",
  },
  {
    path: "cache.subjectMinRemainingSeconds",
    env: ["OCI2GCP_SUBJECT_MIN_REMAINING_SECONDS"],
    type: "int",
    default: 120,
    doc: "Never serve a domain JWT with less than this left.",
  },
  // Prefetch
  {
    path: "cache.prefetchScopes",
    env: ["OCI2GCP_PREFETCH_SCOPES"],
    type: "list",
    default: [],
    doc: "Scope sets (each space separated) whose access tokens of `default` are fetched at start and kept fresh.",
  },
  {
    path: "cache.prefetchAudiences",
    env: ["OCI2GCP_PREFETCH_AUDIENCES"],
    type: "list",
    default: [],
    doc: "Audiences whose ID tokens of `default` (format standard and full) are fetched at start and kept fresh.",
  },
  // Upstream
  {
    path: "upstream.timeoutMs",
    env: ["OCI2GCP_UPSTREAM_TIMEOUT_MS"],
    type: "int",
    default: 10000,
    doc: "Timeout of one upstream HTTP call.",
  },
  {
    path: "upstream.attempts",
    env: ["OCI2GCP_UPSTREAM_ATTEMPTS"],
    type: "int",
    default: 3,
    doc: "Attempts per upstream call on network errors, 5xx and 429.",
  },
  // Per-user access
  {
    path: "access.rules",
    env: [],
    type: "json",
    doc:
      'Which local users may obtain which service accounts\' tokens: a list of rules like { "users": ["alice", 1001], "groups": ["etl"], ' +
      '"serviceAccounts": ["etl@PROJECT.iam.gserviceaccount.com"], "subjectToken": false, "name": "etl" }. The first rule naming the caller ' +
      "(or one of its groups) applies and its first account is the caller's default; callers no rule names are refused. " +
      "Without rules every local user may obtain everything.",
  },
  {
    path: "access.socketRule",
    env: [],
    type: "json",
    doc: "The rule (its index in access.rules, or its name) whose accounts the Unix socket serves; without it the socket serves nobody once there are rules.",
  },
  // Start jitter
  {
    path: "upstream.startJitterSeconds",
    env: ["OCI2GCP_START_JITTER_SECONDS"],
    type: "int",
    default: 0,
    doc: "Wait a random time up to this long before the first token exchange at start (fleets booting at once).",
  },
  // Logging
  {
    path: "log.level",
    env: ["OCI2GCP_LOG_LEVEL"],
    flag: "--log-level",
    type: "enum",
    values: LOG_LEVELS,
    default: "info",
    doc: "Log level.",
  },
] as const satisfies readonly Setting[];

export const SETTINGS: readonly Setting[] = SETTING_TABLE;
