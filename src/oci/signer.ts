import crypto from "node:crypto";

/**
 * OCI HTTP request signing (draft-cavage signatures, version 1), as the OCI
 * Python SDK signs requests: with `date` rather than `x-date`, the form known to
 * work against IAM identity domains.
 */

export const SIGNED_HEADERS_WITH_BODY = ["date", "(request-target)", "host", "content-length", "content-type", "x-content-sha256"];

export interface SignedRequest {
  headers: Record<string, string>;
  body: string;
}

export function signRequest(opts: {
  method: string;
  url: URL;
  body: string;
  contentType: string;
  keyId: string;
  privateKey: crypto.KeyObject;
  now?: Date;
}): SignedRequest {
  const method = opts.method.toLowerCase();
  const body = Buffer.from(opts.body, "utf8");
  const headers: Record<string, string> = {
    date: (opts.now ?? new Date()).toUTCString(),
    host: opts.url.host,
    "content-length": String(body.length),
    "content-type": opts.contentType,
    "x-content-sha256": crypto.createHash("sha256").update(body).digest("base64"),
  };
  const target = `${method} ${opts.url.pathname}${opts.url.search}`;
  const signingString = SIGNED_HEADERS_WITH_BODY.map((h) =>
    h === "(request-target)" ? `(request-target): ${target}` : `${h}: ${headers[h]}`,
  ).join("\n");
  const signature = crypto.sign("sha256", Buffer.from(signingString, "utf8"), opts.privateKey).toString("base64");
  headers.authorization =
    `Signature version="1",headers="${SIGNED_HEADERS_WITH_BODY.join(" ")}",keyId="${opts.keyId}",` +
    `algorithm="rsa-sha256",signature="${signature}"`;
  return { headers, body: opts.body };
}
