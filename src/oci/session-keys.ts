import crypto from "node:crypto";
import { promisify } from "node:util";

const generateKeyPair = promisify(crypto.generateKeyPair);

/** OCI session keys: RSA-2048, as PEM (public SPKI, private PKCS#8). */
const SESSION_KEY: crypto.RSAKeyPairOptions<"pem", "pem"> = {
  modulusLength: 2048,
  publicExponent: 65537,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs8", format: "pem" },
};

async function newPair(): Promise<{ publicKey: string; privateKey: string }> {
  return generateKeyPair("rsa", SESSION_KEY);
}

/** How long after a federation the next session key pair is generated. */
const NEXT_KEY_DELAY_MS = 1000;

let early: Promise<{ publicKey: string; privateKey: string }> | undefined;

/**
 * Starts generating the first session key pair now, in the thread pool, for the
 * supplier that `create()` makes later: `serve` calls this before it loads the
 * rest of the daemon, so the key is made while the modules load.
 */
export function prestartSessionKey(): void {
  if (early) return;
  early = newPair();
  // A failure surfaces when create() awaits it; nothing is left unhandled meanwhile.
  early.catch(() => {});
}

class PemKeyPair {
  constructor(
    private readonly pub: string,
    private readonly priv: string,
  ) {}
  getPublic(): string {
    return this.pub;
  }
  getPrivate(): string {
    return this.priv;
  }
}

/**
 * A session key supplier for oci-common's federation clients that generates the
 * next RSA key pair in the thread pool ahead of time. oci-common's own supplier
 * calls generateKeyPairSync at every refresh, which stalls the event loop (and
 * every client waiting on the daemon) for tens of milliseconds.
 */
export class PregeneratedSessionKeySupplier {
  private current: PemKeyPair;
  /** Whether `current` has been read (sent to the auth service) since it was made. */
  private used = false;
  private next?: { publicKey: string; privateKey: string };
  private pending?: Promise<void>;
  private timer?: NodeJS.Timeout;

  private constructor(first: { publicKey: string; privateKey: string }) {
    this.current = new PemKeyPair(first.publicKey, first.privateKey);
    this.prepareSoon();
  }

  static async create(): Promise<PregeneratedSessionKeySupplier> {
    const first = early ?? newPair();
    early = undefined;
    return new PregeneratedSessionKeySupplier(await first);
  }

  /** Resolves when a refresh will not block: the next key pair is ready, or not needed yet. */
  ready(): Promise<void> {
    if (this.used && !this.next) this.prepare();
    return this.pending ?? Promise.resolve();
  }

  getKeyPair(): PemKeyPair {
    this.used = true;
    return this.current;
  }

  refreshKeys(): void {
    // oci-common asks for new keys before every federation, the first included: a
    // pair nobody has read yet is as new as one made now (and the next one may still
    // be in the making, which would mean generating one synchronously here).
    if (!this.used) return;
    this.used = false;
    const n = this.next ?? crypto.generateKeyPairSync("rsa", SESSION_KEY);
    this.next = undefined;
    this.current = new PemKeyPair(n.publicKey, n.privateKey);
    this.prepareSoon();
  }

  /**
   * Generates the next pair a little later: a key generation is hundreds of ms
   * of CPU, and now is when the federation it was asked for (and the hops
   * after it) need the CPU. The next federation is normally minutes away.
   */
  private prepareSoon(): void {
    if (this.next || this.pending || this.timer) return;
    this.timer = setTimeout(() => this.prepare(), NEXT_KEY_DELAY_MS);
    this.timer.unref();
  }

  private prepare(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending || this.next) return;
    this.pending = newPair()
      .then((p) => {
        this.next = p;
      })
      .catch(() => {})
      .finally(() => {
        this.pending = undefined;
      });
  }
}
