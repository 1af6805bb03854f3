/**
 * The one abstraction every hop of the chain implements, in the spirit of
 * golang.org/x/oauth2's TokenSource: something that can produce a token.
 */

export interface Token {
  /** The secret itself. Never log it. */
  readonly value: string;
  /** Absolute expiry, epoch milliseconds. */
  readonly expiresAt: number;
  /** When this process obtained it, epoch milliseconds. */
  readonly obtainedAt: number;
}

export interface TokenSource<T extends Token = Token> {
  token(): Promise<T>;
}
