import crypto from "node:crypto";
import { promisify } from "node:util";

const generateKeyPair = promisify(crypto.generateKeyPair);

async function newPair(): Promise<{ publicKey: string; privateKey: string }> {
  return generateKeyPair("rsa", {
    modulusLength: 2048,
    publicExponent: 65537,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
}

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

  private constructor(first: { publicKey: string; privateKey: string }) {
    this.current = new PemKeyPair(first.publicKey, first.privateKey);
    this.prepare();
  }

  static async create(): Promise<PregeneratedSessionKeySupplier> {
    const first = early ?? newPair();
    early = undefined;
    return new PregeneratedSessionKeySupplier(await first);
  }

  /** Resolves when the next key pair is ready, so a refresh will not block. */
  ready(): Promise<void> {
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
    const n =
      this.next ??
      crypto.generateKeyPairSync("rsa", {
        modulusLength: 2048,
        publicExponent: 65537,
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      });
    this.next = undefined;
    this.current = new PemKeyPair(n.publicKey, n.privateKey);
    this.prepare();
  }

  private prepare(): void {
    if (this.pending) return;
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
