import type { Token } from "../token/token-source.js";
import { AuthClient } from "./gal-internals.js";

/**
 * A google-auth-library AuthClient whose bearer token comes from a function of
 * ours (a cached hop of the chain): what Impersonated takes as its source
 * client, and what the library API hands to `@google-cloud/*` clients.
 */
export class TokenSourceAuthClient extends AuthClient {
  constructor(
    private readonly source: () => Promise<Token>,
    opts: ConstructorParameters<typeof AuthClient>[0] = {},
  ) {
    super(opts);
  }

  async getAccessToken(): Promise<{ token: string; res?: undefined }> {
    const t = await this.source();
    this.credentials = { access_token: t.value, expiry_date: t.expiresAt, token_type: "Bearer" };
    return { token: t.value };
  }

  async getRequestHeaders(): Promise<Headers> {
    const h = new Headers();
    h.set("authorization", `Bearer ${(await this.source()).value}`);
    return h;
  }

  request: AuthClient["request"] = async (opts) => {
    const headers = new Headers(opts.headers as ConstructorParameters<typeof Headers>[0]);
    headers.set("authorization", `Bearer ${(await this.source()).value}`);
    return this.transporter.request({ ...opts, headers });
  };
}
