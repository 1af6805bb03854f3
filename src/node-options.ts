/**
 * The node flags every shipped deployment (systemd unit, container image,
 * Kubernetes manifests) runs the daemon with, and the benchmark's daemons too.
 * A 2 MB young generation keeps the resident size under load below 100 MB for a
 * little more garbage-collection work; the old-space cap sits well below the
 * memory limits of the unit and the manifests. Node reads them only from its
 * command line or NODE_OPTIONS, never at run time.
 */
export const DAEMON_NODE_OPTIONS = "--max-old-space-size=160 --max-semi-space-size=2";
