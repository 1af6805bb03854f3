/**
 * Protocol constants shared by the hops, the HTTP surface and the CLI. This
 * module imports nothing, so anything may use it without loading more.
 */

/** OAuth 2.0 token exchange (RFC 8693). */
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
export const JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt";

/** The scope of tokens asked for without one, and of the federated token. */
export const CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";

/** oci2gcp's own HTTP routes beside the metadata API. */
export const SUBJECT_TOKEN_PATH = "/oci2gcp/v1/subject-token";
export const STATUS_PATH = "/oci2gcp/v1/status";

/** The metadata API's root and the header every request and answer carries. */
export const METADATA_ROOT = "/computeMetadata/v1";
export const METADATA_FLAVOR_HEADER = "metadata-flavor";
export const METADATA_FLAVOR = "Google";

/** The metadata server's well-known address (interception redirects TCP to it on port 80 to the daemon). */
export const METADATA_IP = "169.254.169.254";
