import crypto from "node:crypto";
import { promisify } from "node:util";
import forge from "node-forge";

/**
 * X.509 certificates for the emulators. node:crypto can parse and verify certificates but
 * not create them, so creation uses node-forge; keys come from node:crypto. The daemon
 * never imports this.
 */

export interface IssuedCert {
  /** PEM of the certificate. */
  certPem: string;
  /** The certificate's private key, PKCS#1 PEM ("RSA PRIVATE KEY"), as OCI's metadata serves it. */
  keyPem: string;
  key: crypto.KeyObject;
  cert: crypto.X509Certificate;
  /** DER of the certificate. */
  der: Buffer;
}

export interface CertOptions {
  /** Relative distinguished names in order, e.g. [["CN", "x"], ["OU", "opc-tenant:..."]]. */
  subject: Array<[string, string]>;
  /** The issuing CA; the certificate is self-signed when absent. */
  issuer?: IssuedCert;
  /** The subject's private key; a fresh RSA-2048 key when absent. */
  key?: crypto.KeyObject;
  isCa?: boolean;
  pathLen?: number;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Validity from now (the certificate is also valid 5 minutes back). Default one day. */
  validSeconds?: number;
  serverAuth?: boolean;
  clientAuth?: boolean;
}

const generateKeyPair = promisify(crypto.generateKeyPair);

/** An RSA-2048 private key, generated off the event loop. */
export async function newRsaKeyAsync(): Promise<crypto.KeyObject> {
  const { privateKey } = await generateKeyPair("rsa", { modulusLength: 2048 });
  return privateKey;
}

function forgePrivate(key: crypto.KeyObject): forge.pki.rsa.PrivateKey {
  return forge.pki.privateKeyFromPem(key.export({ format: "pem", type: "pkcs1" }).toString());
}

function forgePublic(key: crypto.KeyObject): forge.pki.rsa.PublicKey {
  const pub = key.type === "private" ? crypto.createPublicKey(key) : key;
  return forge.pki.publicKeyFromPem(pub.export({ format: "pem", type: "spki" }).toString()) as forge.pki.rsa.PublicKey;
}

function subjectKeyId(key: crypto.KeyObject): string {
  const pub = key.type === "private" ? crypto.createPublicKey(key) : key;
  const der = pub.export({ format: "der", type: "pkcs1" });
  return crypto.createHash("sha1").update(der).digest().toString("binary");
}

export async function createCertificate(opts: CertOptions): Promise<IssuedCert> {
  const key = opts.key ?? (await newRsaKeyAsync());
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic(key);
  // A positive serial: the first byte below 0x80.
  cert.serialNumber = `01${crypto.randomBytes(15).toString("hex")}`;
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(now + (opts.validSeconds ?? 86400) * 1000);
  const attrs = opts.subject.map(([shortName, value]) => ({ shortName, value }));
  cert.setSubject(attrs);
  if (opts.issuer) {
    const issuerCert = forge.pki.certificateFromPem(opts.issuer.certPem);
    cert.setIssuer(issuerCert.subject.attributes);
  } else {
    cert.setIssuer(attrs);
  }
  const signer = opts.issuer?.key ?? key;
  const extensions: unknown[] = [];
  if (opts.isCa) {
    const bc: Record<string, unknown> = { name: "basicConstraints", cA: true, critical: true };
    if (opts.pathLen !== undefined) bc.pathLenConstraint = opts.pathLen;
    extensions.push(bc);
    extensions.push({ name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    extensions.push({ name: "basicConstraints", cA: false });
    extensions.push({ name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true });
    if (opts.serverAuth || opts.clientAuth) {
      extensions.push({ name: "extKeyUsage", serverAuth: !!opts.serverAuth, clientAuth: !!opts.clientAuth });
    }
  }
  const altNames: unknown[] = [];
  for (const d of opts.dnsNames ?? []) altNames.push({ type: 2, value: d });
  for (const ip of opts.ipAddresses ?? []) altNames.push({ type: 7, ip });
  if (altNames.length) extensions.push({ name: "subjectAltName", altNames });
  extensions.push({ name: "subjectKeyIdentifier", subjectKeyIdentifier: forge.util.bytesToHex(subjectKeyId(key)) });
  extensions.push({ name: "authorityKeyIdentifier", keyIdentifier: subjectKeyId(signer) });
  cert.setExtensions(extensions as never[]);
  cert.sign(forgePrivate(signer), forge.md.sha256.create());

  const certPem = forge.pki.certificateToPem(cert).replace(/\r\n/g, "\n");
  const x = new crypto.X509Certificate(certPem);
  return {
    certPem,
    keyPem: key.export({ format: "pem", type: "pkcs1" }).toString(),
    key,
    cert: x,
    der: x.raw,
  };
}

/** Colon-separated lowercase hex, as OCI prints fingerprints. */
export function colonHex(buf: Buffer): string {
  return (buf.toString("hex").match(/../g) ?? []).join(":");
}

/** SHA-1 fingerprint of a certificate's DER, colon-separated lowercase hex. */
export function certSha1Fingerprint(der: Buffer): string {
  return colonHex(crypto.createHash("sha1").update(der).digest());
}
