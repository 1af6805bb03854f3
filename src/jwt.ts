/**
 * The claims of a JWT, read without checking its signature: every token read
 * here comes straight from its issuer, and only its times and diagnostic claims
 * are used. Imports nothing, so that any hop may use it without importing another.
 */
export function decodeJwtClaims(jwt: string): Record<string, unknown> | undefined {
  const parts = jwt.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const c = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    return c && typeof c === "object" && !Array.isArray(c) ? c : undefined;
  } catch {
    return undefined;
  }
}
