import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t, { type Test } from "tap";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config/config.js";
import { SETTINGS } from "../../src/config/settings.js";
import { DAEMON_NODE_OPTIONS } from "../../src/node-options.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

type Obj = Record<string, any>;

function load(file: string): Obj[] {
  const docs = parseAllDocuments(fs.readFileSync(path.join(root, "config/kubernetes", file), "utf8"));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS() as Obj).filter(Boolean);
}
const kind = (docs: Obj[], k: string) => docs.filter((d) => d.kind === k);
const settingDefault = (p: string) => SETTINGS.find((s) => s.path === p)!.default as string;
const envOf = (c: Obj): Record<string, string> =>
  Object.fromEntries((c.env ?? []).filter((e: Obj) => "value" in e).map((e: Obj) => [e.name, String(e.value)]));

/** What every container of these manifests must have, whatever it runs. */
function checkHardened(t: Test, where: string, pod: Obj, c: Obj): void {
  const sc = c.securityContext ?? {};
  t.equal(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
  t.not(sc.runAsUser ?? pod.securityContext?.runAsUser, 0, `${where}: not uid 0`);
  t.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation false`);
  t.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  t.not(sc.privileged, true, `${where}: not privileged`);
  t.same(sc.capabilities?.drop, ["ALL"], `${where}: drops ALL capabilities`);
  t.notOk(sc.capabilities?.add?.length, `${where}: adds none`);
  t.equal((sc.seccompProfile ?? pod.securityContext?.seccompProfile)?.type, "RuntimeDefault", `${where}: seccomp RuntimeDefault`);
}

function checkResources(t: Test, where: string, c: Obj): void {
  t.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${where}: requests cpu and memory`);
  t.ok(c.resources?.limits?.memory, `${where}: a memory limit`);
}

/** The oci2gcp container's image user is the Dockerfile's. */
const imageUid = Number(/^USER\s+(\d+)/m.exec(fs.readFileSync(path.join(root, "Dockerfile"), "utf8"))![1]);

t.test("daemonset.yaml: node daemon on the node's loopback, hardened, configured by a ConfigMap", async (t) => {
  const docs = load("daemonset.yaml");
  const [ds] = kind(docs, "DaemonSet");
  const [cm] = kind(docs, "ConfigMap");
  const [ns] = kind(docs, "Namespace");
  t.ok(ds && cm && ns, "a Namespace, a ConfigMap and a DaemonSet");
  t.equal(ds!.metadata.namespace, ns!.metadata.name);
  t.equal(cm!.metadata.namespace, ns!.metadata.name);
  t.equal(
    ns!.metadata.labels["pod-security.kubernetes.io/enforce"],
    "privileged",
    "hostNetwork needs the privileged Pod Security level, in a namespace of its own",
  );

  const pod = ds!.spec.template.spec;
  t.equal(pod.hostNetwork, true, "hostNetwork: the node's 127.0.0.1");
  t.equal(pod.dnsPolicy, "ClusterFirstWithHostNet");
  t.equal(pod.automountServiceAccountToken, false, "the instance principal needs no Kubernetes token");
  t.equal(pod.securityContext.runAsUser, imageUid, "the image's user");
  t.same(
    ds!.spec.selector.matchLabels,
    Object.fromEntries(Object.entries(ds!.spec.template.metadata.labels).filter(([k]) => k in ds!.spec.selector.matchLabels)),
    "selector matches the template",
  );

  t.equal(pod.containers.length, 1);
  const c = pod.containers[0];
  checkHardened(t, "oci2gcp", pod, c);
  checkResources(t, "oci2gcp", c);
  t.notOk(envOf(c).OCI2GCP_ALLOW_NON_LOOPBACK, "no non-loopback listening unless the operator opts in");
  t.notOk(envOf(c).OCI2GCP_HOST, "the listen address comes from the config");
  for (const [probe, p] of [
    ["livenessProbe", "/healthz"],
    ["readinessProbe", "/readyz"],
  ] as const) {
    t.equal(c[probe]?.httpGet?.path, p, `${probe} asks ${p}`);
    t.equal(c[probe]?.httpGet?.host, "127.0.0.1", `${probe} asks the node's loopback, where the daemon listens`);
    t.equal(c[probe]?.httpGet?.port, 8181);
  }
  t.equal(c.ports[0].containerPort, 8181);

  // The config file the container reads is the ConfigMap's, and it is valid.
  const configArg = c.args[c.args.indexOf("--config") + 1];
  t.same(c.args.slice(0, 1), ["serve"]);
  const mount = c.volumeMounts.find((m: Obj) => configArg.startsWith(`${m.mountPath}/`));
  t.ok(mount, "--config points into a mounted volume");
  t.equal(mount.readOnly, true);
  const vol = pod.volumes.find((v: Obj) => v.name === mount.name);
  t.equal(vol.configMap.name, cm!.metadata.name, "that volume is the ConfigMap");
  const key = path.basename(configArg);
  t.ok(cm!.data[key], `the ConfigMap has ${key}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-cm-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, key), cm!.data[key]);
  const config = loadConfig({ file: path.join(dir, key), env: {} });
  t.equal(config.oci.principal, "instance", "the node's instance principal");
  t.equal(config.server.host, "127.0.0.1");
  t.equal(config.server.port, 8181);
  t.equal(config.server.allowNonLoopback, false);
});

t.test("sidecar.yaml: per-pod daemon with the OKE workload identity, the app pointed at it", async (t) => {
  const docs = load("sidecar.yaml");
  const [dep] = kind(docs, "Deployment");
  const [sa] = kind(docs, "ServiceAccount");
  t.ok(dep && sa, "a Deployment and its ServiceAccount");
  const pod = dep!.spec.template.spec;
  t.equal(pod.serviceAccountName, sa!.metadata.name);
  t.equal(sa!.metadata.namespace, dep!.metadata.namespace);
  t.notOk(pod.hostNetwork, "the pod's own network namespace: its 127.0.0.1 is private to the pod");
  t.equal(pod.automountServiceAccountToken, false, "no service account token in every container");

  const containers: Obj[] = [...(pod.initContainers ?? []), ...pod.containers];
  const daemon = containers.find((c) => envOf(c).OCI2GCP_PRINCIPAL !== undefined)!;
  const apps = containers.filter((c) => c !== daemon);
  t.ok(daemon, "an oci2gcp container");
  t.ok(apps.length >= 1, "an application container");
  if ((pod.initContainers ?? []).includes(daemon)) t.equal(daemon.restartPolicy, "Always", "a native sidecar keeps running");
  for (const c of containers) checkHardened(t, c.name, pod, c);
  checkResources(t, daemon.name, daemon);
  t.equal(pod.securityContext.runAsUser, imageUid, "the image's user");

  const env = envOf(daemon);
  t.equal(env.OCI2GCP_PRINCIPAL, "oke-workload");
  t.equal(env.OCI2GCP_HOST ?? "127.0.0.1", "127.0.0.1", "loopback");
  t.notOk(env.OCI2GCP_ALLOW_NON_LOOPBACK);
  const port = env.OCI2GCP_PORT ?? "8181";
  for (const app of apps) {
    t.equal(envOf(app).GCE_METADATA_HOST, `127.0.0.1:${port}`, `${app.name}: GCE_METADATA_HOST is the sidecar`);
    t.match(envOf(app).NO_PROXY ?? "", /127\.0\.0\.1/, `${app.name}: no proxy for it`);
    t.notOk(envOf(app).OCI2GCP_PRINCIPAL);
  }
  // Probes run inside the container, on the loopback address it listens on.
  for (const [probe, p] of [
    ["livenessProbe", "/healthz"],
    ["readinessProbe", "/readyz"],
  ] as const) {
    const cmd: string[] = daemon[probe]?.exec?.command ?? [];
    t.equal(cmd[0], "node", `${probe}: exec node`);
    t.match(cmd.join(" "), `http://127.0.0.1:${port}${p}`, `${probe} asks ${p}`);
  }

  // The service account token and CA reach the daemon alone, where the OKE provider reads them.
  const tokenPath = settingDefault("oci.oke.tokenPath");
  const caPath = settingDefault("oci.oke.caCertPath");
  const tokenDir = path.dirname(tokenPath);
  t.equal(path.dirname(caPath), tokenDir);
  const mount = daemon.volumeMounts.find((m: Obj) => m.mountPath === tokenDir);
  t.ok(mount, `the daemon mounts ${tokenDir}`);
  const vol = pod.volumes.find((v: Obj) => v.name === mount.name);
  const sources: Obj[] = vol.projected.sources;
  t.equal(sources.find((s) => s.serviceAccountToken)?.serviceAccountToken.path, path.basename(tokenPath));
  t.ok(
    sources.find((s) => s.configMap?.items?.some((i: Obj) => i.path === path.basename(caPath))),
    "the cluster CA beside it",
  );
  for (const app of apps)
    t.notOk(
      (app.volumeMounts ?? []).some((m: Obj) => m.name === mount.name),
      `${app.name} does not get the token`,
    );

  // The daemon's environment is a valid configuration (Kubernetes adds KUBERNETES_SERVICE_HOST).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-sa-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "token"), "k8s-token");
  fs.writeFileSync(path.join(dir, "ca.crt"), "ca");
  const config = loadConfig({
    env: { ...env, KUBERNETES_SERVICE_HOST: "10.96.0.1" },
    overrides: { "oci.oke.tokenPath": path.join(dir, "token"), "oci.oke.caCertPath": path.join(dir, "ca.crt") },
  });
  t.equal(config.oci.principal, "oke-workload");
  t.equal(config.server.port, Number(port));
  t.ok(config.google.serviceAccounts.length >= 1, "a service account to impersonate");
});

t.test("both manifests run the same image", async (t) => {
  const images = new Set(
    [...load("daemonset.yaml"), ...load("sidecar.yaml")]
      .flatMap((d) => (d.spec?.template?.spec ? [...(d.spec.template.spec.initContainers ?? []), ...d.spec.template.spec.containers] : []))
      .filter((c: Obj) => c.name === "oci2gcp")
      .map((c: Obj) => c.image),
  );
  t.equal(images.size, 1);
});

t.test("every deployment runs node with the same flags, those the benchmark measured", async (t) => {
  const daemons = [...load("daemonset.yaml"), ...load("sidecar.yaml")]
    .flatMap((d) => (d.spec?.template?.spec ? [...(d.spec.template.spec.initContainers ?? []), ...d.spec.template.spec.containers] : []))
    .filter((c: Obj) => c.name === "oci2gcp");
  t.equal(daemons.length, 2);
  for (const c of daemons) t.equal(envOf(c).NODE_OPTIONS, DAEMON_NODE_OPTIONS, "Kubernetes: NODE_OPTIONS");
  const unit = fs.readFileSync(path.join(root, "config/systemd/oci2gcp.service"), "utf8");
  t.equal(/^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(unit)?.[1], DAEMON_NODE_OPTIONS, "systemd: NODE_OPTIONS");
  const dockerfile = fs.readFileSync(path.join(root, "Dockerfile"), "utf8");
  t.equal(/^\s*NODE_OPTIONS="([^"]*)"/m.exec(dockerfile)?.[1], DAEMON_NODE_OPTIONS, "Dockerfile: NODE_OPTIONS");
});
