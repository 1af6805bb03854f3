import v8 from "node:v8";

/**
 * The node flags every shipped deployment (systemd unit, container image,
 * Kubernetes manifests) runs the daemon with, and the benchmark's daemons too.
 * A 2 MB young generation keeps the resident size under load below 100 MB for a
 * little more garbage-collection work; the old-space cap sits well below the
 * memory limits of the unit and the manifests. Node reads them only from its
 * command line or NODE_OPTIONS, never at run time.
 */
export const DAEMON_NODE_OPTIONS = "--max-old-space-size=160 --max-semi-space-size=2";

/**
 * V8 flags that `oci2gcp serve` sets on itself, since node refuses them in
 * NODE_OPTIONS. Node's fetch parses HTTP with a WebAssembly build of llhttp,
 * which V8 compiles with its baseline compiler and then again with TurboFan in
 * the background; that second compilation peaks at about 30 MB of compiler
 * memory, most of which the process keeps. The daemon calls upstream a few times
 * an hour: the baseline code is enough, and the daemon stays about 9 MB smaller.
 */
export const DAEMON_V8_FLAGS = "--liftoff-only";

/** Sets DAEMON_V8_FLAGS; call before the first fetch (the first WebAssembly compilation). */
export function setDaemonV8Flags(): void {
  v8.setFlagsFromString(DAEMON_V8_FLAGS);
}
