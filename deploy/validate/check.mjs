// Checks tideserve's rendered Kubernetes objects (tools/validate-deploy drives it).
//
//   node check.mjs --root DIR --rendered DIR --out DIR [--only CHECK,...]
//
// --rendered holds one YAML stream per kustomization (`kubectl kustomize` output, named after the
// kustomization's path) and --root is the tree whose deploy/ is checked. Checks, each reported on
// its own line as PASS or FAIL with every problem it found:
//   schema      every object against its JSON schema (kubernetes-models, @kubernetes-models/*:
//               istio, keda, prometheus-operator, argo-rollouts, argo-cd)
//   types       every object type-checked against the packages' TypeScript interfaces with
//               `tsc --noEmit --strict`: object literals reject misspelled or unknown fields,
//               which the schemas let through
//   deprecated  fields and API versions that current Kubernetes / Istio removed or deprecated
//   policy      what the schemas cannot know: probe paths and ports, drain arithmetic, security
//               context, selectors that must match, metric names shared by HPA, adapter, KEDA,
//               rules and dashboard; the gateway's routes, JWT, authorization, mTLS and rate
//               limit (check_gateway_security); the model volume's one writer
//               (check_model_volume), the Argo Rollout and its analysis (check_rollout,
//               check_analysis_template), the Argo CD Applications (check_applications)
//   dashboard   the Grafana dashboard JSON
// It also writes, under --out, the Prometheus rule files and an expression file (dashboard,
// adapter, KEDA and Argo Rollouts analysis queries as recording rules) for promtool.
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";

const here = path.dirname(fileURLToPath(import.meta.url));

function parse_args(argv) {
  const args = { only: null };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    args[key] = argv[i + 1];
  }
  if (!args.root || !args.rendered || !args.out) {
    console.error("usage: check.mjs --root DIR --rendered DIR --out DIR [--only a,b]");
    process.exit(2);
  }
  args.only = args.only ? new Set(args.only.split(",")) : null;
  return args;
}
const args = parse_args(process.argv.slice(2));
const root = path.resolve(args.root);
const deploy_dir = path.join(root, "deploy");

// ---------------------------------------------------------------------------------------------
// Inputs: every rendered stream, plus the objects applied on their own (not in a kustomization).

function load_stream(file) {
  return yaml.loadAll(fs.readFileSync(file, "utf8")).filter((o) => o && typeof o === "object");
}

const renders = {}; // name -> [objects]
for (const f of fs.readdirSync(args.rendered).sort()) {
  if (f.endsWith(".yaml")) renders[f.replace(/\.yaml$/, "")] = load_stream(path.join(args.rendered, f));
}
const standalone_files = ["deploy/k8s/monitoring/prometheus-adapter-config.yaml"];
for (const f of standalone_files) {
  const p = path.join(root, f);
  if (fs.existsSync(p)) renders[`file:${f}`] = load_stream(p);
}

const all_objects = [];
for (const [render, objects] of Object.entries(renders)) {
  for (const obj of objects) all_objects.push({ render, obj });
}
const id_of = ({ render, obj }) => `${render}: ${obj.kind}/${obj.metadata?.name ?? "?"}`;

// ---------------------------------------------------------------------------------------------
// Where each apiVersion's models live.

const crd_packages = {
  "networking.istio.io": "@kubernetes-models/istio",
  "security.istio.io": "@kubernetes-models/istio",
  "telemetry.istio.io": "@kubernetes-models/istio",
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  // One API group, two projects: Rollout, AnalysisTemplate... and Application, AppProject...
  "argoproj.io": ["@kubernetes-models/argo-rollouts", "@kubernetes-models/argo-cd"],
};

function module_of(api_version, kind) {
  const [group, version] = api_version.includes("/") ? api_version.split("/") : ["", api_version];
  if (!/^[A-Za-z0-9]+$/.test(kind) || !/^[a-z0-9]+$/.test(version) || !/^[a-z0-9.-]*$/.test(group)) {
    return null;
  }
  if (group === "") return `kubernetes-models/${version}/${kind}`;
  if (crd_packages[group]) {
    const specs = [crd_packages[group]].flat().map((pkg) => `${pkg}/${group}/${version}/${kind}`);
    return specs.find(module_exists) ?? specs[0];
  }
  return `kubernetes-models/${group}/${version}/${kind}`;
}

function module_exists(spec) {
  const [scope_or_name, ...rest] = spec.split("/");
  const pkg = scope_or_name.startsWith("@") ? `${scope_or_name}/${rest.shift()}` : scope_or_name;
  return fs.existsSync(path.join(here, "node_modules", pkg, `${rest.join("/")}.js`));
}

// ---------------------------------------------------------------------------------------------
// Reporting.

const results = [];
async function check(name, fn) {
  if (args.only && !args.only.has(name)) return;
  const started = Date.now();
  const problems = [];
  try {
    await fn((msg) => problems.push(msg));
  } catch (e) {
    problems.push(`internal error: ${e.stack ?? e}`);
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  results.push({ name, ok: problems.length === 0 });
  console.log(`${problems.length === 0 ? "PASS" : "FAIL"} ${name} (${secs} s)`);
  for (const p of problems) console.log(`  - ${p}`);
}

// ---------------------------------------------------------------------------------------------
// schema: the packages' validate() (JSON schema from the OpenAPI / CRD definitions).

await check("schema", async (fail) => {
  if (all_objects.length === 0) fail("no objects rendered");
  for (const item of all_objects) {
    const { obj } = item;
    const spec = module_of(String(obj.apiVersion ?? ""), String(obj.kind ?? ""));
    if (!spec || !module_exists(spec)) {
      fail(`${id_of(item)}: no model for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
      continue;
    }
    const mod = await import(spec);
    try {
      new mod[obj.kind](obj).validate();
    } catch (e) {
      fail(`${id_of(item)}: ${e.message}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// types: one TypeScript file, one annotated object literal per object, `tsc --noEmit --strict`.

await check("types", async (fail) => {
  const dir = path.join(args.out, "types");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.symlinkSync(path.join(here, "node_modules"), path.join(dir, "node_modules"));
  const imports = new Map();
  const lines = [];
  all_objects.forEach((item, i) => {
    const { obj } = item;
    const spec = module_of(String(obj.apiVersion ?? ""), String(obj.kind ?? ""));
    if (!spec || !module_exists(spec)) return; // reported by schema
    const alias = `I${obj.kind}_${imports.size}`;
    if (!imports.has(spec)) imports.set(spec, alias);
    lines.push(`// ${id_of(item)}`);
    lines.push(`export const object_${i}: ${imports.get(spec)} = ${JSON.stringify(obj, null, 2)};`);
  });
  const header = [...imports].map(([spec, alias]) => {
    const kind = spec.split("/").pop();
    return `import type { I${kind} as ${alias} } from "${spec}";`;
  });
  fs.writeFileSync(path.join(dir, "objects.ts"), [...header, "", ...lines, ""].join("\n"));
  fs.writeFileSync(
    path.join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, target: "es2022", module: "nodenext",
        moduleResolution: "nodenext", skipLibCheck: true, types: [],
      },
      files: ["objects.ts"],
    }),
  );
  const tsc = path.join(here, "node_modules", "typescript", "bin", "tsc");
  const r = spawnSync(process.execPath, [tsc, "-p", dir, "--pretty", "false"], { encoding: "utf8" });
  if (r.status !== 0) {
    // Point each error at the object it is in: the comment line above the literal names it.
    const source = fs.readFileSync(path.join(dir, "objects.ts"), "utf8").split("\n");
    for (const line of (r.stdout + r.stderr).split("\n").filter(Boolean)) {
      const m = line.match(/objects\.ts\((\d+),\d+\): (.*)/);
      if (!m) { fail(line); continue; }
      let n = Number(m[1]) - 1;
      while (n > 0 && !source[n].startsWith("// ")) n--;
      fail(`${source[n].slice(3)}: ${m[2]}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// deprecated: fields and versions that still pass the schemas but are removed or deprecated.

const deprecated_keys = {
  consecutiveErrors: "Istio outlierDetection: use consecutive5xxErrors (or consecutiveGatewayErrors)",
  circuitBreaker: "Istio: the v1alpha1 circuitBreaker block is gone; use trafficPolicy.connectionPool and outlierDetection",
  serviceAccount: "Pod spec: serviceAccount is deprecated; use serviceAccountName",
  targetAverageValue: "autoscaling/v2beta1 metric form; use target: {type: AverageValue, averageValue}",
  targetAverageUtilization: "autoscaling/v2beta1 metric form; use target: {type: Utilization, averageUtilization}",
  metricName: "autoscaling/v2beta1 metric form; use metric: {name}",
};
const deprecated_api_versions = {
  "autoscaling/v2beta1": "removed in Kubernetes 1.25; use autoscaling/v2",
  "autoscaling/v2beta2": "removed in Kubernetes 1.26; use autoscaling/v2",
  "policy/v1beta1": "removed in Kubernetes 1.25; use policy/v1",
  "extensions/v1beta1": "removed in Kubernetes 1.16/1.22",
  "apps/v1beta1": "removed in Kubernetes 1.16",
  "apps/v1beta2": "removed in Kubernetes 1.16",
  "networking.istio.io/v1alpha3": "use networking.istio.io/v1 (Istio 1.22+) or v1beta1",
  "keda.k8s.io/v1alpha1": "KEDA 1.x; use keda.sh/v1alpha1",
};
// Kinds that exist only in an API version listed above: EnvoyFilter has no v1beta1 or v1.
const only_api_version = { "networking.istio.io/v1alpha3": ["EnvoyFilter"] };
const deprecated_annotations = {
  "scheduler.alpha.kubernetes.io/critical-pod": "removed; use priorityClassName",
  "seccomp.security.alpha.kubernetes.io/pod": "use securityContext.seccompProfile",
};

function walk(value, trail, visit) {
  if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${trail}[${i}]`, visit));
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      visit(k, v, `${trail}.${k}`);
      walk(v, `${trail}.${k}`, visit);
    }
  }
}

await check("deprecated", async (fail) => {
  for (const item of all_objects) {
    const { obj } = item;
    if (deprecated_api_versions[obj.apiVersion] && !(only_api_version[obj.apiVersion] ?? []).includes(obj.kind)) {
      fail(`${id_of(item)}: apiVersion ${obj.apiVersion}: ${deprecated_api_versions[obj.apiVersion]}`);
    }
    walk(obj, "", (key, _value, trail) => {
      // ConfigMap data and annotations/labels are free-form maps: only their keys below matter.
      if (/^\.data\./.test(trail)) return;
      if (trail.includes(".annotations.")) {
        if (deprecated_annotations[key]) fail(`${id_of(item)}: annotation ${key}: ${deprecated_annotations[key]}`);
        return;
      }
      if (Object.hasOwn(deprecated_keys, key)) fail(`${id_of(item)}: ${trail.slice(1)}: ${deprecated_keys[key]}`);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// policy: cross-object and numeric rules (deploy/README.md explains each number).

const kServerPort = 8000;
const kReadyPath = "/v2/health/ready";
const kLivePath = "/v2/health/live";
const kAdapterMetric = "tideserve_request_latency_p99";

const label_match = (selector, labels) =>
  selector && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

function seconds(value) {
  const m = String(value).match(/^(\d+(?:\.\d+)?)(ms|s|m|h)?$/);
  if (!m) return NaN;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, undefined: 1 }[m[2]];
}

function env_of(container) {
  return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
}

// PromQL helpers for the rule / adapter / dashboard cross-references.
function prometheus_rules(objects) {
  const rules = [];
  for (const { obj } of objects.filter((o) => o.obj.kind === "PrometheusRule")) {
    for (const g of obj.spec?.groups ?? []) for (const r of g.rules ?? []) rules.push(r);
  }
  return rules;
}
function metric_names_in(expr) {
  const names = new Set();
  const stripped = String(expr).replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\[[^\]]*\]/g, "");
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    if (m[0].startsWith("tideserve")) names.add(m[0]);
  }
  return names;
}
function outer_by_labels(expr) {
  const m = String(expr).match(/by\s*\(([^)]*)\)/);
  return m ? m[1].split(",").map((s) => s.trim()).filter(Boolean) : [];
}
const known_metrics = new Set(
  fs.readFileSync(path.join(root, "deploy/validate/server-metrics.txt"), "utf8")
    .split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean),
);
// Worker mode's families (tideserve worker, tideserve serve --redis): not in a plain server's
// scrape, so listed apart (deploy/validate/jobs-metrics.txt).
const jobs_metrics_file = path.join(root, "deploy/validate/jobs-metrics.txt");
const jobs_metrics = new Set(
  (fs.existsSync(jobs_metrics_file) ? fs.readFileSync(jobs_metrics_file, "utf8") : "")
    .split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean),
);
function series_known(name, recorded) {
  if (recorded.has(name)) return true;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return known_metrics.has(name) || known_metrics.has(base) || jobs_metrics.has(name) || jobs_metrics.has(base);
}

// ---------------------------------------------------------------------------------------------
// policy, the gateway (deploy/k8s/gateway, deploy/README.md "The gateway"): who may reach which
// route, mTLS, and the per-client rate limit. Sample requests stand for the server's routes:
// every rule below is judged by what it does to them.

const kInferenceRequests = [
  ["POST", "/predict"], ["POST", "/embed"], ["POST", "/tokenize"], ["POST", "/v1/embeddings"],
  ["POST", "/rerank"], ["POST", "/v1/rerank"], ["POST", "/classify"],
  ["POST", "/v2/models/bert-base-chinese/infer"], ["POST", "/v2/models/bert-base-chinese/versions/1/infer"],
  ["GET", "/v1/models"],
];
// Probes, metrics and metadata: served to the cluster, never through the gateway.
const kInternalRequests = [
  ["GET", "/health"], ["GET", "/v2/health/live"], ["GET", "/v2/health/ready"], ["GET", "/metrics"],
  ["GET", "/info"], ["GET", "/v2"], ["GET", "/v2/models/bert-base-chinese"],
  ["GET", "/v2/models/bert-base-chinese/ready"], ["GET", "/v2/models/bert-base-chinese/versions/1"],
  ["GET", "/v2/models/bert-base-chinese/versions/1/ready"],
  // The repository (admin) API: model loads and unloads, never from outside.
  ["POST", "/v2/repository/index"], ["POST", "/v2/repository/models/bert-base-chinese/load"],
  ["POST", "/v2/repository/models/bert-base-chinese/unload"],
];
const kLocalRateLimitType = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

const escape_re = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// Istio StringMatch (VirtualService uri, method): exact, prefix, or an RE2 regex that must match
// the whole value. Returns null for a regex JavaScript cannot compile.
function string_match(m, value) {
  if (!m || Object.keys(m).length === 0) return true;
  if (m.exact !== undefined) return value === m.exact;
  if (m.prefix !== undefined) return value.startsWith(m.prefix);
  if (m.regex !== undefined) {
    try {
      return new RegExp(`^(?:${m.regex})$`).test(value);
    } catch {
      return null;
    }
  }
  return true;
}

// AuthorizationPolicy path / method patterns: "*" (any), "abc*" (prefix), "*abc" (suffix),
// exact, and URI templates with {*} (one segment) and {**} (any number of segments).
function authz_value_match(pattern, value) {
  if (pattern === "*") return value.length > 0;
  if (pattern.includes("{*}") || pattern.includes("{**}")) {
    const re = pattern.split(/(\{\*\*\}|\{\*\})/).map((part) =>
      part === "{**}" ? ".*" : part === "{*}" ? "[^/]+" : escape_re(part)).join("");
    return new RegExp(`^${re}$`).test(value);
  }
  if (pattern.endsWith("*")) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith("*")) return value.endsWith(pattern.slice(1));
  return value === pattern;
}
const any_match = (patterns, value) => (patterns ?? []).some((p) => authz_value_match(String(p), value));

// Does an ALLOW rule's `to` admit this request? No `to` admits everything; hosts and ports are
// not looked at (a rule is judged by the widest thing it can allow).
function rule_covers(rule, method, path) {
  const to = rule.to ?? [];
  if (to.length === 0) return true;
  return to.some(({ operation: op }) => {
    if (!op) return true;
    if (op.methods?.length && !any_match(op.methods, method)) return false;
    if (any_match(op.notMethods, method)) return false;
    if (op.paths?.length && !any_match(op.paths, path)) return false;
    if (any_match(op.notPaths, path)) return false;
    return true;
  });
}

// Does every source of the rule name who the caller is? requestPrincipals: a verified JWT;
// principals: an mTLS identity ("*", any workload with a certificate, including the gateway
// that forwards the internet, does not count); namespaces only where `namespaces_ok`.
function source_authenticates(source, namespaces_ok) {
  if (!source) return false;
  if ((source.requestPrincipals ?? []).length > 0) return true;
  const principals = source.principals ?? [];
  if (principals.length > 0 && !principals.includes("*")) return true;
  return namespaces_ok && (source.namespaces ?? []).length > 0 && !source.namespaces.includes("*");
}
function rule_authenticates(rule, namespaces_ok) {
  const from = rule.from ?? [];
  return from.length > 0 && from.every((f) => source_authenticates(f.source, namespaces_ok));
}

const selects = (policy_selector, labels) =>
  !!policy_selector && Object.keys(policy_selector).length > 0 &&
  Object.entries(policy_selector).every(([k, v]) => labels?.[k] === v);
const ns_of = (obj) => obj.metadata?.namespace ?? "";

// The LocalRateLimit config inside an EnvoyFilter HTTP_FILTER patch, or null.
function local_rate_limit_of(patch_value) {
  const tc = patch_value?.typed_config;
  if (!tc) return null;
  const type = String(tc["@type"] ?? "");
  if (type.endsWith("TypedStruct")) return String(tc.type_url ?? "").endsWith(kLocalRateLimitType) ? tc.value ?? {} : null;
  return type.endsWith(kLocalRateLimitType) ? tc : null;
}
const full_percent = (f) => f?.default_value?.numerator === 100 &&
  ["HUNDRED", undefined].includes(f?.default_value?.denominator);
function bucket_problem(b) {
  if (!b) return "no token_bucket";
  const fill = seconds(b.fill_interval ?? "");
  if (!(Number(b.max_tokens) > 0) || !(Number(b.tokens_per_fill ?? 1) > 0)) return "token_bucket needs max_tokens and tokens_per_fill > 0";
  if (!(fill >= 0.05)) return "token_bucket fill_interval must be at least 50ms";
  return null;
}

function check_gateway_security(render, objs, fail, base_pods) {
  const item = (obj) => ({ render, obj });
  const gateways = objs.filter((o) => o.kind === "Gateway");
  const gateway_vs = objs.filter((o) => o.kind === "VirtualService" && (o.spec?.gateways ?? []).some((g) => g !== "mesh"));
  const policies = objs.filter((o) => o.kind === "AuthorizationPolicy");
  const request_authns = objs.filter((o) => o.kind === "RequestAuthentication");
  const peer_authns = objs.filter((o) => o.kind === "PeerAuthentication");
  const envoy_filters = objs.filter((o) => o.kind === "EnvoyFilter");
  const gateway_pods = gateways.map((g) => ({ ns: ns_of(g), labels: g.spec?.selector ?? {} }));
  const selects_gateway = (o, sel) => gateway_pods.some((g) => g.ns === ns_of(o) && selects(sel, g.labels));

  // Gateway: HTTPS only, TLS terminated here (the gateway must see the requests to check them).
  for (const g of gateways) {
    const gid = id_of(item(g));
    if (!g.spec?.selector || Object.keys(g.spec.selector).length === 0) fail(`${gid}: needs a selector naming its ingress gateway pods`);
    for (const s of g.spec?.servers ?? []) {
      const what = `server ${s.name ?? s.port?.number}`;
      if (s.port?.protocol !== "HTTPS") fail(`${gid}: ${what} is ${s.port?.protocol}: only HTTPS (bearer tokens must not cross the internet in clear)`);
      if (!["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"].includes(s.tls?.mode)) fail(`${gid}: ${what} tls.mode ${s.tls?.mode}: the gateway must terminate TLS (SIMPLE or MUTUAL) to check JWTs and routes`);
      if (!s.tls?.credentialName && !(s.tls?.credentialNames ?? []).length) fail(`${gid}: ${what} has no tls.credentialName`);
    }
  }

  // VirtualServices bound to a gateway: route only the inference routes.
  for (const vs of gateway_vs) {
    const vid = id_of(item(vs));
    for (const ref of vs.spec.gateways.filter((x) => x !== "mesh")) {
      const [ns, name] = ref.includes("/") ? ref.split("/") : [ns_of(vs), ref];
      const g = gateways.find((x) => x.metadata?.name === name && ns_of(x) === ns);
      if (!g) { fail(`${vid}: gateway ${ref} is not part of this kustomization`); continue; }
      const hosts = (g.spec?.servers ?? []).flatMap((s) => s.hosts ?? []);
      for (const h of vs.spec?.hosts ?? []) {
        if (!hosts.some((gh) => gh === h || gh === `${ns_of(vs)}/${h}` || gh === `*/${h}`)) fail(`${vid}: host ${h} is not a host of Gateway ${ref} for namespace ${ns_of(vs)}`);
      }
    }
    const matches = [];
    for (const r of vs.spec?.http ?? []) {
      if (!(r.match ?? []).length) fail(`${vid}: route ${r.name ?? "?"} has no match: it routes every path, probes and /metrics included`);
      for (const m of r.match ?? []) {
        matches.push({ r, m });
        if (m.uri?.regex !== undefined && string_match(m.uri, "/") === null) fail(`${vid}: route ${r.name ?? "?"}: uri regex ${m.uri.regex} does not compile`);
        if (!m.uri) fail(`${vid}: route ${r.name ?? "?"} has a match without uri: it routes every path`);
      }
    }
    for (const [, p] of kInternalRequests) {
      const hit = matches.find(({ m }) => m.uri && string_match(m.uri, p) === true);
      if (hit) fail(`${vid}: route ${hit.r.name ?? "?"} exposes ${p} through the gateway (probes, metrics and metadata stay internal)`);
    }
    for (const [method, p] of kInferenceRequests) {
      const routed = matches.some(({ m }) => m.uri && string_match(m.uri, p) === true && string_match(m.method, method) === true);
      if (!routed) fail(`${vid}: the gateway does not route ${method} ${p}`);
    }
  }

  // AuthorizationPolicy: no ALLOW rule lets an unauthenticated caller reach a route; through the
  // gateway only the inference routes, and only with a verified JWT.
  for (const ap of policies) {
    const aid = id_of(item(ap));
    const action = ap.spec?.action ?? "ALLOW";
    if (action !== "ALLOW") continue;
    const sel = ap.spec?.selector?.matchLabels;
    if (!sel || Object.keys(sel).length === 0) fail(`${aid}: an ALLOW policy needs a selector (without one it governs every workload of its namespace)`);
    const at_gateway = selects_gateway(ap, sel);
    (ap.spec?.rules ?? []).forEach((rule, i) => {
      const rid = `${aid}: rule ${i}`;
      if (!rule || Object.keys(rule).length === 0) { fail(`${rid} is {}: it allows everyone everything`); return; }
      for (const [method, p] of kInferenceRequests) {
        if (rule_covers(rule, method, p) && !rule_authenticates(rule, false)) {
          fail(`${rid} allows unauthenticated callers to ${method} ${p} (needs from.source.requestPrincipals or principals)`);
          break;
        }
      }
      for (const [method, p] of kInternalRequests) {
        if (!rule_covers(rule, method, p)) continue;
        if (at_gateway) { fail(`${rid} allows ${method} ${p} through the gateway (probes, metrics and metadata stay internal)`); break; }
        if (!rule_authenticates(rule, true)) { fail(`${rid} allows unauthenticated callers to ${method} ${p}`); break; }
      }
      // requestPrincipals are "<iss>/<sub>": an issuer no RequestAuthentication of these pods
      // accepts never matches.
      const issuers = request_authns.filter((ra) => ns_of(ra) === ns_of(ap) && selects(ra.spec?.selector?.matchLabels, sel))
        .flatMap((ra) => (ra.spec?.jwtRules ?? []).map((j) => j.issuer));
      for (const f of rule.from ?? []) {
        for (const rp of f.source?.requestPrincipals ?? []) {
          if (rp !== "*" && !issuers.some((iss) => rp.startsWith(`${iss}/`))) fail(`${rid}: requestPrincipal ${rp} names no issuer of a RequestAuthentication selecting the same pods`);
        }
      }
    });
  }

  // RequestAuthentication: a trustworthy key source and an audience.
  for (const ra of request_authns) {
    const rid = id_of(item(ra));
    if (!ra.spec?.selector?.matchLabels) fail(`${rid}: needs a selector`);
    const rules = ra.spec?.jwtRules ?? [];
    if (!rules.length) fail(`${rid}: no jwtRules`);
    for (const j of rules) {
      if (!j.issuer) fail(`${rid}: jwtRule without issuer`);
      if (!j.jwks && !String(j.jwksUri ?? "").startsWith("https://")) fail(`${rid}: jwksUri must be https (signing keys fetched in clear can be replaced)`);
      if (!(j.audiences ?? []).length) fail(`${rid}: jwtRule for ${j.issuer} has no audiences (any token of that issuer would do)`);
    }
  }

  // PeerAuthentication: STRICT, everywhere.
  for (const pa of peer_authns) {
    const pid = id_of(item(pa));
    if (pa.spec?.mtls?.mode !== "STRICT") fail(`${pid}: mtls.mode ${pa.spec?.mtls?.mode ?? "(unset: inherits the mesh's PERMISSIVE)"}, want STRICT`);
    for (const [port, m] of Object.entries(pa.spec?.portLevelMtls ?? {})) {
      if (m?.mode !== "STRICT") fail(`${pid}: portLevelMtls ${port} mode ${m?.mode}, want STRICT`);
    }
  }
  if (peer_authns.length || gateways.length) {
    for (const dr of objs.filter((o) => o.kind === "DestinationRule")) {
      const tls = [dr.spec?.trafficPolicy?.tls, ...(dr.spec?.trafficPolicy?.portLevelSettings ?? []).map((s) => s.tls)];
      for (const t of tls.filter(Boolean)) {
        if (t.mode !== "ISTIO_MUTUAL") fail(`${id_of(item(dr))}: tls.mode ${t.mode}: with STRICT mTLS leave it unset or ISTIO_MUTUAL`);
      }
    }
  }

  if (!gateways.length) return;

  // What a gateway render must hold for each Gateway: its JWT check, its ALLOW policy, the
  // namespace-wide STRICT PeerAuthentication and the replicas' own policy, the rate limit.
  const workload_ns = [...new Set(gateway_vs.map(ns_of))];
  for (const ns of workload_ns) {
    if (!peer_authns.some((pa) => ns_of(pa) === ns && !pa.spec?.selector && pa.spec?.mtls?.mode === "STRICT")) {
      fail(`${render}: no namespace-wide PeerAuthentication with mtls.mode STRICT in namespace ${ns}`);
    }
    if (!policies.some((ap) => ns_of(ap) === ns && (ap.spec?.action ?? "ALLOW") === "ALLOW" && selects(ap.spec?.selector?.matchLabels, base_pods))) {
      fail(`${render}: no ALLOW AuthorizationPolicy selects the tideserve pods in namespace ${ns}`);
    }
  }
  for (const g of gateways) {
    const gid = id_of(item(g));
    const glabels = g.spec?.selector ?? {};
    const for_gw = (o, sel) => ns_of(o) === ns_of(g) && selects(sel, glabels);
    const gw_ras = request_authns.filter((ra) => for_gw(ra, ra.spec?.selector?.matchLabels));
    if (!gw_ras.length) fail(`${gid}: no RequestAuthentication selects its pods (in namespace ${ns_of(g)})`);
    if (!policies.some((ap) => (ap.spec?.action ?? "ALLOW") === "ALLOW" && for_gw(ap, ap.spec?.selector?.matchLabels))) {
      fail(`${gid}: no ALLOW AuthorizationPolicy selects its pods: without one every route is open to everyone`);
    }
    // The replicas check the token again: the gateway must pass it on.
    const workload_issuers = new Set(request_authns.filter((ra) => workload_ns.includes(ns_of(ra)) && selects(ra.spec?.selector?.matchLabels, base_pods))
      .flatMap((ra) => (ra.spec?.jwtRules ?? []).map((j) => j.issuer)));
    for (const ra of gw_ras) {
      for (const j of ra.spec?.jwtRules ?? []) {
        if (workload_issuers.has(j.issuer) && j.forwardOriginalToken !== true) {
          fail(`${id_of(item(ra))}: forwardOriginalToken must be true: the replicas' sidecars check the ${j.issuer} token again`);
        }
      }
    }
    const claim_headers = new Set(gw_ras.flatMap((ra) => (ra.spec?.jwtRules ?? []).flatMap((j) => (j.outputClaimToHeaders ?? []).map((o) => String(o.header).toLowerCase()))));

    // The local rate limit of this gateway's pods.
    const filters = envoy_filters.filter((ef) => for_gw(ef, ef.spec?.workloadSelector?.labels));
    const limits = [];
    const descriptor_sources = new Map(); // descriptor key -> header names
    for (const ef of filters) {
      for (const cp of ef.spec?.configPatches ?? []) {
        const v = cp.patch?.value;
        if (cp.applyTo === "HTTP_FILTER" && v?.name === "envoy.filters.http.local_ratelimit") {
          limits.push({ ef, cp, cfg: local_rate_limit_of(v) });
        }
        if (["VIRTUAL_HOST", "HTTP_ROUTE"].includes(cp.applyTo)) {
          const rls = [...(v?.rate_limits ?? []), ...(v?.route?.rate_limits ?? [])];
          for (const a of rls.flatMap((rl) => rl.actions ?? [])) {
            if (a.request_headers) {
              const k = a.request_headers.descriptor_key;
              descriptor_sources.set(k, [...(descriptor_sources.get(k) ?? []), String(a.request_headers.header_name).toLowerCase()]);
            }
          }
        }
      }
    }
    if (!limits.length) { fail(`${gid}: no EnvoyFilter adds envoy.filters.http.local_ratelimit to its pods`); continue; }
    for (const { ef, cp, cfg } of limits) {
      const eid = id_of(item(ef));
      if (!cfg) { fail(`${eid}: envoy.filters.http.local_ratelimit without a ${kLocalRateLimitType} typed_config`); continue; }
      if (cp.match?.context !== "GATEWAY") fail(`${eid}: the local rate limit patch must match context GATEWAY`);
      const sub = cp.match?.listener?.filterChain?.filter?.subFilter?.name;
      if (cp.patch?.operation !== "INSERT_BEFORE" || sub !== "envoy.filters.http.router") {
        fail(`${eid}: insert the local rate limit INSERT_BEFORE subFilter envoy.filters.http.router (after jwt_authn and RBAC, so that it sees the verified client)`);
      }
      const code = cfg.status?.code;
      if (code !== "TooManyRequests" && Number(code) !== 429) fail(`${eid}: status.code ${code ?? "(unset)"}: want TooManyRequests (429), as tideserve answers`);
      const retry_after = (cfg.response_headers_to_add ?? []).find((h) => String(h.header?.key).toLowerCase() === "retry-after");
      const retry_s = Number(retry_after?.header?.value);
      if (!retry_after || !/^\d+$/.test(String(retry_after.header?.value)) || !(retry_s > 0)) {
        fail(`${eid}: response_headers_to_add must set Retry-After to a whole number of seconds (tideserve sends Retry-After: 1)`);
      }
      if (!full_percent(cfg.filter_enabled) || !full_percent(cfg.filter_enforced)) {
        fail(`${eid}: filter_enabled and filter_enforced must be 100/HUNDRED (Envoy's default is 0 %: nothing is limited)`);
      }
      const bp = bucket_problem(cfg.token_bucket);
      if (bp) fail(`${eid}: the gateway-wide bucket: ${bp}`);
      const global_fill = seconds(cfg.token_bucket?.fill_interval ?? "");
      const per_client = (cfg.descriptors ?? []).filter((d) => (d.entries ?? []).some((e) => !e.value));
      if (!per_client.length) fail(`${eid}: no per-client descriptor (an entry without value: one bucket per client)`);
      if (per_client.length && !(Number(cfg.max_dynamic_descriptors) >= 100)) fail(`${eid}: max_dynamic_descriptors must be set (>= 100; Envoy keeps 20 clients' buckets by default)`);
      for (const d of per_client) {
        const dp = bucket_problem(d.token_bucket);
        if (dp) { fail(`${eid}: per-client descriptor: ${dp}`); continue; }
        const fill = seconds(d.token_bucket.fill_interval);
        const ratio = fill / global_fill;
        if (!(Math.abs(ratio - Math.round(ratio)) < 1e-9 && ratio >= 1)) fail(`${eid}: per-client fill_interval ${d.token_bucket.fill_interval} must be a multiple of the gateway-wide ${cfg.token_bucket?.fill_interval}`);
        if (retry_s > 0 && retry_s < fill) fail(`${eid}: Retry-After ${retry_s} s is shorter than the per-client refill interval ${fill} s`);
        for (const e of d.entries.filter((x) => !x.value)) {
          const headers = descriptor_sources.get(e.key) ?? [];
          if (!headers.length) fail(`${eid}: no rate_limits action (VIRTUAL_HOST or HTTP_ROUTE patch) produces descriptor key ${e.key}`);
          for (const h of headers) {
            if (!claim_headers.has(h)) fail(`${eid}: descriptor key ${e.key} comes from header ${h}, which is not a verified JWT claim (outputClaimToHeaders): a client could pick its own bucket`);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// policy, model updates and canaries (deploy/README.md "Model updates", "Canary", "GitOps"): the
// model volume's one writer, the Argo Rollout and its analysis, the Argo CD Applications.

const kSyncCronJob = "tideserve-model-sync";
const kSyncScriptKey = "sync.sh";
const kCanaryWeights = [10, 50, 100];
const kHashLabel = "rollouts-pod-template-hash";
const kHashSeriesLabel = "rollouts_pod_template_hash";

// The Rollout that takes its pod template from Deployment d (workloadRef), if any.
function rollout_of(objs, d) {
  return objs.find((o) => o.kind === "Rollout" && o.spec?.workloadRef?.kind === "Deployment" &&
    o.spec.workloadRef.name === d.metadata?.name && ns_of(o) === ns_of(d));
}

// Every pod template of an object: [{where, spec, metadata}].
function pod_templates(obj) {
  const t = { Deployment: obj.spec?.template, StatefulSet: obj.spec?.template, DaemonSet: obj.spec?.template,
    ReplicaSet: obj.spec?.template, Job: obj.spec?.template, Rollout: obj.spec?.template,
    CronJob: obj.spec?.jobTemplate?.spec?.template, Pod: obj }[obj.kind];
  return t?.spec ? [{ spec: t.spec, metadata: t.metadata ?? {} }] : [];
}

// ---------------------------------------------------------------------------------------------
// policy, worker mode (deploy/README.md "Worker mode"): the batch worker, what scales it (a KEDA
// redis-streams ScaledObject or an HPA on the adapter's external queue_depth, never both), and
// the dev Redis. The worker's stream and group, the scaler's and the HPA's must agree.

const kWorkerComponent = "worker";
// dev and dev with worker mode: one replica serving the model baked into the image.
const is_dev = (render) => render === "overlays-dev" || render === "overlays-dev-jobs";
const kWorkerPortName = "health";
const kJobsGroup = "workers";
const kJobsPrefixDefault = "tideserve";
const kRedisComponent = "redis";
const component_of = (o) => o.spec?.template?.metadata?.labels?.["app.kubernetes.io/component"];
function is_worker(o) {
  return o.kind === "Deployment" && component_of(o) === kWorkerComponent;
}
const positive_int = (v) => /^\d+$/.test(String(v ?? "")) && Number(v) > 0;
const whole_number = (v) => /^\d+$/.test(String(v ?? ""));

// redis://[user[:password]@]host[:port][/db] -> {host, port, db}, or null.
function parse_redis_url(url) {
  const m = String(url ?? "").match(/^redis:\/\/(?:[^@/]*@)?([^:/@]+)(?::(\d+))?(?:\/(\d+))?\/?$/);
  return m ? { host: m[1], port: Number(m[2] ?? 6379), db: Number(m[3] ?? 0) } : null;
}

// The model ids a server or worker container serves: MODEL_ID, the directory name of MODEL_NAME,
// or with MODEL_REPOSITORY the models the sync CronJob puts there (its MODELS).
function model_ids(env, render) {
  if (env.MODEL_ID) return [env.MODEL_ID];
  if (env.MODEL_NAME) return [String(env.MODEL_NAME).replace(/\/+$/, "").split("/").pop()];
  if (env.MODEL_REPOSITORY !== undefined) {
    const syncs = [render, "base-model-sync"].flatMap((r) => (renders[r] ?? []).filter((o) => o.kind === "CronJob" && o.metadata?.name === kSyncCronJob));
    const c = syncs[0]?.spec?.jobTemplate?.spec?.template?.spec?.containers?.[0];
    return String(env_of(c ?? {}).MODELS ?? "").split(/[\s,]+/).filter(Boolean);
  }
  return [];
}
const kModelEnv = ["MODEL_NAME", "MODEL_ID", "MODEL_VERSION", "MODEL_REPOSITORY", "MODEL_CONTROL", "PIN_VERSIONS"];

function check_worker(render, objs, w, fail, ctx) {
  const id = id_of({ render, obj: w });
  const pod = w.spec?.template?.spec ?? {};
  const labels = w.spec?.template?.metadata?.labels ?? {};
  if (!label_match(w.spec?.selector?.matchLabels, labels)) fail(`${id}: selector does not match the pod labels`);
  const c = (pod.containers ?? [])[0];
  if (!c || (pod.containers ?? []).length !== 1) { fail(`${id}: want exactly one container`); return; }
  const cmd = [...(c.command ?? []), ...(c.args ?? [])];
  if (!/(^|\/)tideserve$/.test(cmd[0] ?? "") || cmd[1] !== "worker") fail(`${id}: must run \`tideserve worker\` (command), not ${JSON.stringify(cmd)}: the image's entrypoint is \`tideserve serve\``);
  const raw_env = c.env ?? [];
  const env = env_of(c);
  const port = Number(env.PORT ?? 8000);
  const hp = (c.ports ?? []).find((p) => p.name === kWorkerPortName);
  if (!hp) fail(`${id}: no container port named ${kWorkerPortName}`);
  else if (hp.containerPort !== port) fail(`${id}: port ${kWorkerPortName} is ${hp.containerPort}, but PORT is ${port}`);
  for (const [probe, want] of [["startupProbe", kReadyPath], ["readinessProbe", kReadyPath], ["livenessProbe", kLivePath]]) {
    const get = c[probe]?.httpGet;
    if (!get) { fail(`${id}: ${probe} must be an httpGet probe`); continue; }
    if (get.path !== want) fail(`${id}: ${probe} path ${get.path}, want ${want}`);
    if (get.port !== kWorkerPortName && get.port !== port) fail(`${id}: ${probe} port ${get.port} is not the ${kWorkerPortName} port (${port})`);
  }
  const sp = c.startupProbe ?? {};
  if ((sp.failureThreshold ?? 3) * (sp.periodSeconds ?? 10) < 120) fail(`${id}: startupProbe allows less than 120 s for the model load`);
  // No public API: no Service may select the workers.
  for (const svc of objs.filter((o) => o.kind === "Service")) {
    if (label_match(svc.spec?.selector, labels)) fail(`${id}: Service ${svc.metadata?.name} selects the workers, which have no API (only health and metrics)`);
  }
  // Shutdown: the lines held are finished within SHUTDOWN_TIMEOUT, and the sidecar outlives it.
  const shutdown = Number(env.SHUTDOWN_TIMEOUT ?? 30);
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  let drain = 0;
  const proxy_cfg = w.spec?.template?.metadata?.annotations?.["proxy.istio.io/config"];
  if (proxy_cfg !== undefined) {
    let cfg = null;
    try { cfg = yaml.load(proxy_cfg); } catch { /* reported below */ }
    drain = seconds(cfg?.terminationDrainDuration ?? "5s");
    if (!(drain > shutdown)) fail(`${id}: proxy.istio.io/config terminationDrainDuration ${cfg?.terminationDrainDuration ?? "(unset: 5s)"} must exceed SHUTDOWN_TIMEOUT ${shutdown}: the sidecar carries the Redis connection the results are written over`);
  }
  if (!(grace > Math.max(shutdown, drain))) fail(`${id}: terminationGracePeriodSeconds ${grace} must exceed SHUTDOWN_TIMEOUT ${shutdown}${drain ? ` and the sidecar's drain ${drain}` : ""}`);
  // Redis and the job flags.
  const redis = raw_env.find((e) => e.name === "REDIS_URL");
  if (!redis) fail(`${id}: REDIS_URL is not set`);
  else if (redis.value !== undefined) {
    if (!parse_redis_url(redis.value)) fail(`${id}: REDIS_URL ${redis.value} is not redis://[user:password@]host:port/db (the client has no TLS: rediss:// is not supported)`);
  } else if (!redis.valueFrom?.secretKeyRef) fail(`${id}: REDIS_URL must be a literal or come from a Secret`);
  else if (redis.valueFrom.secretKeyRef.optional === true) fail(`${id}: REDIS_URL's Secret must not be optional: a worker without Redis has nothing to do`);
  const consumer = raw_env.find((e) => e.name === "JOBS_CONSUMER");
  if (consumer && consumer.valueFrom?.fieldRef?.fieldPath !== "metadata.name") fail(`${id}: JOBS_CONSUMER must come from the pod name (fieldRef metadata.name): two workers with one consumer name take each other's lines`);
  for (const k of ["JOBS_VISIBILITY_TIMEOUT", "JOBS_MAX_DELIVERIES"]) {
    if (env[k] !== undefined && !positive_int(env[k])) fail(`${id}: ${k} ${env[k]} must be a positive whole number`);
  }
  if (env.JOBS_VISIBILITY_TIMEOUT !== undefined && !(Number(env.JOBS_VISIBILITY_TIMEOUT) > shutdown)) {
    fail(`${id}: JOBS_VISIBILITY_TIMEOUT ${env.JOBS_VISIBILITY_TIMEOUT} must exceed SHUTDOWN_TIMEOUT ${shutdown} (a line is not taken from a worker that is still finishing it)`);
  }
  // Security and resources, as the server's.
  const psc = pod.securityContext ?? {};
  const csc = c.securityContext ?? {};
  if (!(psc.runAsNonRoot || csc.runAsNonRoot)) fail(`${id}: runAsNonRoot is not set`);
  if ((csc.runAsUser ?? psc.runAsUser) !== 1000) fail(`${id}: must run as uid 1000 (the image's user)`);
  if (csc.readOnlyRootFilesystem !== true || csc.allowPrivilegeEscalation !== false || csc.privileged || !(csc.capabilities?.drop ?? []).includes("ALL") || csc.capabilities?.add?.length) {
    fail(`${id}: readOnlyRootFilesystem, allowPrivilegeEscalation: false, not privileged and dropping ALL capabilities are required`);
  }
  for (const k of ["cpu", "memory"]) if (!c.resources?.requests?.[k] || !c.resources?.limits?.[k]) fail(`${id}: ${k} request and limit required`);
  if (c.resources?.requests?.["nvidia.com/gpu"] !== undefined || c.resources?.limits?.["nvidia.com/gpu"] !== undefined) fail(`${id}: requests nvidia.com/gpu, but tideserve computes only on CPUs`);
  // The model: the server's, mounted read-only.
  if (env.MODEL_REPOSITORY !== undefined) {
    const mount = (c.volumeMounts ?? []).find((m) => m.mountPath.replace(/\/$/, "") === String(env.MODEL_REPOSITORY).replace(/\/$/, ""));
    const vol = mount && (pod.volumes ?? []).find((v) => v.name === mount.name);
    if (!mount) fail(`${id}: MODEL_REPOSITORY ${env.MODEL_REPOSITORY} is not a mounted volume`);
    else if (mount.readOnly !== true || vol?.persistentVolumeClaim?.readOnly !== true) fail(`${id}: the model volume must be mounted readOnly from a readOnly PVC (the model-sync Job is the only writer)`);
    else if (!ctx.model_claims.has(vol.persistentVolumeClaim.claimName)) fail(`${id}: PVC ${vol.persistentVolumeClaim.claimName} is not the model repository (${[...ctx.model_claims].join(", ")})`);
  } else if (!env.MODEL_NAME) fail(`${id}: neither MODEL_REPOSITORY nor MODEL_NAME is set`);
  // The servers that take the batches: in its kustomization, or else the overlays of its namespace
  // whose replicas have REDIS_URL (production, beside overlays/worker-keda or worker-hpa).
  const server_env = (s) => (s.obj.spec?.template?.spec?.containers ?? []).find((x) => x.name === "tideserve") ?? {};
  const takers = ctx.servers.filter((s) => (server_env(s).env ?? []).some((e) => e.name === "REDIS_URL"));
  if (!takers.length) {
    fail(`${id}: no tideserve server ${ctx.servers.length ? `(${[...new Set(ctx.servers.map((s) => s.render))].join(", ")}) ` : ""}in namespace ${ns_of(w) || "(none)"} has REDIS_URL: nobody takes the batches it works on`);
  }
  for (const s of takers) {
    const sc = server_env(s);
    const senv = env_of(sc);
    for (const k of kModelEnv) {
      if (senv[k] !== env[k]) fail(`${id}: ${k} ${env[k] ?? "(unset)"} differs from the server's ${senv[k] ?? "(unset)"} (${s.render}): the worker must serve the models whose batches the server takes`);
    }
    const sredis = (sc.env ?? []).find((e) => e.name === "REDIS_URL");
    const where = (e) => e?.value ?? `${e?.valueFrom?.secretKeyRef?.name}/${e?.valueFrom?.secretKeyRef?.key}`;
    if (redis && where(sredis) !== where(redis)) fail(`${id}: REDIS_URL ${where(redis)} differs from the server's ${where(sredis)} (${s.render}): they must share one Redis`);
  }
  // The worker's streams, for the autoscalers.
  const prefix = env.JOBS_PREFIX ?? kJobsPrefixDefault;
  const models = model_ids(env, render);
  const streams = new Set(models.map((m) => `${prefix}:queue:${m}`));
  const name = w.metadata?.name;
  const targets = (o) => o.spec?.scaleTargetRef?.kind === "Deployment" && o.spec.scaleTargetRef.name === name;
  const scaled = objs.filter((o) => o.kind === "ScaledObject" && targets(o));
  const hpas = objs.filter((o) => o.kind === "HorizontalPodAutoscaler" && targets(o));
  if (scaled.length + hpas.length > 1) fail(`${render}: ${name} has ${scaled.length} ScaledObject(s) and ${hpas.length} HPA(s): one autoscaler, KEDA or HPA, never both`);
  if (scaled.length + hpas.length > 0 && w.spec?.replicas !== undefined) fail(`${id}: replicas is set while an autoscaler owns it (every apply would reset the count)`);
  const pdbs = objs.filter((o) => o.kind === "PodDisruptionBudget" && label_match(o.spec?.selector?.matchLabels, labels));
  if (pdbs.length !== 1) fail(`${render}: want one PodDisruptionBudget for ${name}, found ${pdbs.length}`);
  for (const pdb of pdbs) if (pdb.spec?.maxUnavailable !== 1) fail(`${id_of({ render, obj: pdb })}: maxUnavailable must be 1`);

  for (const so of scaled) {
    const sid = id_of({ render, obj: so });
    const triggers = so.spec?.triggers ?? [];
    const rs = triggers.filter((t) => t.type === "redis-streams");
    if (!rs.length) fail(`${sid}: no redis-streams trigger`);
    if (triggers.length !== rs.length) fail(`${sid}: only redis-streams triggers (the queue is the worker's whole load)`);
    if (!(so.spec?.maxReplicaCount > 0)) fail(`${sid}: maxReplicaCount must be set`);
    if (!(so.spec?.pollingInterval > 0) || so.spec?.cooldownPeriod === undefined) fail(`${sid}: set pollingInterval and cooldownPeriod`);
    for (const t of rs) {
      const m = t.metadata ?? {};
      const tid = `${sid}: trigger ${t.name ?? "?"}`;
      if (!streams.has(m.stream)) fail(`${tid}: stream ${m.stream} is not one the worker reads (${[...streams].join(", ") || "none"}: JOBS_PREFIX:queue:<model>)`);
      if (m.consumerGroup !== kJobsGroup) fail(`${tid}: consumerGroup ${m.consumerGroup ?? "(unset: stream length)"}, want ${kJobsGroup} (the workers' group)`);
      const modes = ["lagCount", "pendingEntriesCount", "streamLength"].filter((k) => m[k] !== undefined);
      if (modes.length !== 1) fail(`${tid}: set exactly one of lagCount, pendingEntriesCount, streamLength`);
      for (const k of ["lagCount", "pendingEntriesCount", "streamLength"]) {
        if (m[k] !== undefined && !positive_int(m[k])) fail(`${tid}: ${k} ${JSON.stringify(m[k])} must be a positive whole number (a string)`);
      }
      if (m.activationLagCount !== undefined && !whole_number(m.activationLagCount)) fail(`${tid}: activationLagCount ${JSON.stringify(m.activationLagCount)} must be a whole number (a string)`);
      if (m.databaseIndex !== undefined && !whole_number(m.databaseIndex)) fail(`${tid}: databaseIndex ${JSON.stringify(m.databaseIndex)} must be a whole number`);
      const where = ["address", "addressFromEnv", "host", "hostFromEnv"].filter((k) => m[k] !== undefined);
      if (!where.length) fail(`${tid}: no address, addressFromEnv, host or hostFromEnv`);
      for (const k of ["addressFromEnv", "hostFromEnv", "portFromEnv", "passwordFromEnv", "usernameFromEnv"]) {
        if (m[k] !== undefined && !raw_env.some((e) => e.name === m[k])) fail(`${tid}: ${k} ${m[k]} is not an environment variable of ${name}'s container`);
      }
      const addr = m.address ?? (m.addressFromEnv ? env[m.addressFromEnv] : undefined);
      if (addr !== undefined) {
        const am = String(addr).match(/^([^:/]+):(\d+)$/);
        if (!am) fail(`${tid}: address ${addr} must be host:port (KEDA takes no redis:// URL)`);
        else if (!am[1].includes(".") && !/^\d/.test(am[1])) fail(`${tid}: address ${addr}: KEDA resolves it from its own namespace: give the Service's full name (<svc>.<namespace>.svc)`);
        const u = redis?.value !== undefined ? parse_redis_url(redis.value) : null;
        if (am && u && (am[1].split(".")[0] !== u.host.split(".")[0] || Number(am[2]) !== u.port)) fail(`${tid}: address ${addr} is not REDIS_URL's ${u.host}:${u.port}`);
      }
      const u = redis?.value !== undefined ? parse_redis_url(redis.value) : null;
      if (u && Number(m.databaseIndex ?? 0) !== u.db) fail(`${tid}: databaseIndex ${m.databaseIndex ?? 0} is not REDIS_URL's database ${u.db}`);
      if (t.authenticationRef && !objs.some((o) => ["TriggerAuthentication", "ClusterTriggerAuthentication"].includes(o.kind) && o.metadata?.name === t.authenticationRef.name)) {
        fail(`${tid}: authenticationRef ${t.authenticationRef.name} is not part of this kustomization`);
      }
    }
    // Scale from zero: only the lag mode (XINFO GROUPS) sees lines before any worker read them.
    if ((so.spec?.minReplicaCount ?? 0) === 0) {
      if (!rs.some((t) => t.metadata?.lagCount !== undefined && t.metadata?.activationLagCount !== undefined)) {
        fail(`${sid}: minReplicaCount 0 needs a lagCount trigger with activationLagCount (the only redis-streams mode that scales from zero)`);
      }
      if (!rs.some((t) => t.metadata?.pendingEntriesCount !== undefined)) {
        fail(`${sid}: no pendingEntriesCount trigger: once the lag is 0 KEDA would scale away workers that still hold lines`);
      }
    }
  }
  for (const h of hpas) {
    const hid = id_of({ render, obj: h });
    if (!((h.spec?.minReplicas ?? 1) >= 1)) fail(`${hid}: minReplicas must be >= 1 (an HPA cannot scale to zero)`);
    if (!(h.spec?.maxReplicas > 0)) fail(`${hid}: maxReplicas must be set`);
    const ext = (h.spec?.metrics ?? []).filter((m) => m.type === "External");
    if (!ext.length) fail(`${hid}: no External metric on the queue`);
    for (const m of ext) {
      const mname = m.external?.metric?.name;
      const rule = ctx.adapter_external.get(mname);
      if (!rule) { fail(`${hid}: External metric ${mname} is not served by a prometheus-adapter externalRules entry`); continue; }
      const queue = m.external?.metric?.selector?.matchLabels?.queue;
      if (!models.includes(queue)) fail(`${hid}: selector queue=${queue ?? "(unset)"} is not a model the worker serves (${models.join(", ") || "none"})`);
      const by = outer_by_labels(rule.metricsQuery);
      for (const k of Object.keys(m.external?.metric?.selector?.matchLabels ?? {})) {
        if (!by.includes(k)) fail(`${hid}: selector label ${k} is not kept by the adapter's metricsQuery by (${by.join(", ")})`);
      }
      if (m.external?.target?.type !== "AverageValue" || !m.external?.target?.averageValue) fail(`${hid}: External target must be AverageValue (lines per worker)`);
    }
  }
}

// The dev Redis: one StatefulSet of the official image, append-only with an fsync per write.
function check_redis(render, objs, fail) {
  for (const ss of objs.filter((o) => o.kind === "StatefulSet" && component_of(o) === kRedisComponent)) {
    const id = id_of({ render, obj: ss });
    const pod = ss.spec?.template?.spec ?? {};
    const labels = ss.spec?.template?.metadata?.labels ?? {};
    const c = (pod.containers ?? [])[0] ?? {};
    const image = String(c.image ?? "");
    const im = image.match(/^docker\.io\/library\/redis:(\d+)\.(\d+)\.(\d+)-bookworm$/);
    if (!im) fail(`${id}: image ${image}: want the official Debian image with a pinned version, docker.io/library/redis:X.Y.Z-bookworm`);
    else if (Number(im[1]) < 7) fail(`${id}: Redis ${im[1]}: the consumer-group lag (KEDA lagCount, XINFO GROUPS) needs Redis 7`);
    const argv = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
    if (!/--appendonly yes\b/.test(argv)) fail(`${id}: run with --appendonly yes (accepted batches and results must survive a restart)`);
    if (!/--appendfsync always\b/.test(argv)) fail(`${id}: run with --appendfsync always (an fsync per write)`);
    const dir = argv.match(/--dir (\S+)/)?.[1] ?? "/data";
    const mount = (c.volumeMounts ?? []).find((m) => m.mountPath.replace(/\/$/, "") === dir.replace(/\/$/, ""));
    if (!mount || !(ss.spec?.volumeClaimTemplates ?? []).some((t) => t.metadata?.name === mount.name)) fail(`${id}: its data directory ${dir} must be a volumeClaimTemplates volume`);
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      if (!/redis-cli .*ping/.test((c[probe]?.exec?.command ?? []).join(" "))) fail(`${id}: ${probe} must run redis-cli ping`);
    }
    const psc = pod.securityContext ?? {};
    const csc = c.securityContext ?? {};
    if (!(psc.runAsNonRoot || csc.runAsNonRoot) || !((csc.runAsUser ?? psc.runAsUser) > 0)) fail(`${id}: must run as a non-root uid`);
    if (csc.readOnlyRootFilesystem !== true || csc.allowPrivilegeEscalation !== false || !(csc.capabilities?.drop ?? []).includes("ALL")) {
      fail(`${id}: readOnlyRootFilesystem, allowPrivilegeEscalation: false and dropping ALL capabilities are required`);
    }
    const svcs = objs.filter((o) => o.kind === "Service" && label_match(o.spec?.selector, labels));
    const headless = svcs.find((o) => o.metadata?.name === ss.spec?.serviceName);
    if (!headless || headless.spec?.clusterIP !== "None") fail(`${id}: serviceName ${ss.spec?.serviceName} must be a headless Service (clusterIP: None) of this kustomization selecting it`);
    const client = svcs.filter((o) => o.spec?.clusterIP !== "None" && (o.spec?.ports ?? []).some((p) => p.port === 6379));
    if (!client.length) fail(`${id}: no client Service on port 6379 selects it`);
    // Every literal REDIS_URL of this kustomization reaches it.
    for (const o of objs) {
      for (const t of pod_templates(o)) {
        for (const ct of t.spec.containers ?? []) {
          const u = (ct.env ?? []).find((e) => e.name === "REDIS_URL" && e.value !== undefined);
          if (!u) continue;
          const p = parse_redis_url(u.value);
          const ok = p && client.some((s) => s.metadata?.name === p.host.split(".")[0] && (s.spec?.ports ?? []).some((x) => x.port === p.port));
          if (!ok) fail(`${id_of({ render, obj: o })}: REDIS_URL ${u.value} is not the client Service ${client.map((s) => `${s.metadata?.name}:6379`).join(", ")}`);
        }
      }
    }
  }
}

const same_labels = (a, b) => JSON.stringify(Object.entries(a ?? {}).sort()) === JSON.stringify(Object.entries(b ?? {}).sort());

// The model volume: written by the sync CronJob alone, read-only everywhere else.
function check_model_volume(render, objs, fail) {
  const item = (obj) => ({ render, obj });
  const server = objs.find((o) => o.kind === "Deployment" && !is_worker(o));
  const c = server?.spec?.template?.spec?.containers?.find((x) => x.name === "tideserve");
  const repo = env_of(c ?? {}).MODEL_REPOSITORY;
  if (repo === undefined) return;
  const mount = (c.volumeMounts ?? []).find((m) => m.mountPath.replace(/\/$/, "") === String(repo).replace(/\/$/, ""));
  const claim = server.spec.template.spec.volumes?.find((v) => v.name === mount?.name)?.persistentVolumeClaim?.claimName;
  if (!claim) return; // reported with the Deployment
  const pvc = objs.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata?.name === claim);
  if (pvc && !(pvc.spec?.accessModes ?? []).includes("ReadWriteMany")) {
    fail(`${id_of(item(pvc))}: accessModes ${JSON.stringify(pvc.spec?.accessModes)}: want ReadWriteMany (the model-sync Job writes while replicas on other nodes read)`);
  }
  const writers = [];
  for (const o of objs) {
    for (const t of pod_templates(o)) {
      for (const v of (t.spec.volumes ?? []).filter((x) => x.persistentVolumeClaim?.claimName === claim)) {
        for (const ct of [...(t.spec.initContainers ?? []), ...(t.spec.containers ?? [])]) {
          for (const m of (ct.volumeMounts ?? []).filter((x) => x.name === v.name)) {
            const writable = m.readOnly !== true && v.persistentVolumeClaim.readOnly !== true;
            if (!writable) continue;
            writers.push(o);
            if (!(o.kind === "CronJob" && o.metadata?.name === kSyncCronJob)) {
              fail(`${id_of(item(o))}: container ${ct.name} mounts the model volume ${claim} writable: only CronJob ${kSyncCronJob} may write it`);
            }
          }
        }
      }
    }
  }
  const sync = objs.find((o) => o.kind === "CronJob" && o.metadata?.name === kSyncCronJob);
  if (!sync) { fail(`${render}: the model volume ${claim} has no writer: CronJob ${kSyncCronJob} is not part of this kustomization`); return; }
  const sid = id_of(item(sync));
  if (!writers.includes(sync)) fail(`${sid}: does not mount the model volume ${claim} writable`);
  if (sync.spec?.concurrencyPolicy !== "Forbid") fail(`${sid}: concurrencyPolicy ${sync.spec?.concurrencyPolicy ?? "(unset: Allow)"}, want Forbid (one writer at a time)`);
  const job = sync.spec?.jobTemplate?.spec ?? {};
  if (!(job.activeDeadlineSeconds > 0)) fail(`${sid}: jobTemplate.spec.activeDeadlineSeconds must bound a stuck copy`);
  const pod = job.template?.spec ?? {};
  if (job.template?.metadata?.annotations?.["sidecar.istio.io/inject"] !== "false") {
    fail(`${sid}: annotate the pod sidecar.istio.io/inject: "false" (an Istio sidecar keeps a Job's pod running)`);
  }
  const sc = (pod.containers ?? [])[0];
  if (!sc || (pod.containers ?? []).length !== 1) { fail(`${sid}: want exactly one container`); return; }
  const senv = env_of(sc);
  const smount = (sc.volumeMounts ?? []).find((m) => (pod.volumes ?? []).find((v) => v.name === m.name)?.persistentVolumeClaim?.claimName === claim);
  if (smount && String(senv.MODEL_REPOSITORY ?? "").replace(/\/$/, "") !== smount.mountPath.replace(/\/$/, "")) {
    fail(`${sid}: MODEL_REPOSITORY ${senv.MODEL_REPOSITORY ?? "(unset)"} is not where it mounts the model volume (${smount.mountPath})`);
  }
  if (!senv.MODEL_SOURCE) fail(`${sid}: MODEL_SOURCE is not set`);
  if (senv.REQUIRE_MANIFEST !== "true") fail(`${sid}: REQUIRE_MANIFEST ${senv.REQUIRE_MANIFEST ?? "(unset)"}, want "true": every version is checked against its SHA256SUMS`);
  // It runs the script of its ConfigMap.
  const cmd = [...(sc.command ?? []), ...(sc.args ?? [])];
  const script_ok = (pod.volumes ?? []).some((v) => {
    const cm = v.configMap && objs.find((o) => o.kind === "ConfigMap" && o.metadata?.name === v.configMap.name);
    const m = (sc.volumeMounts ?? []).find((x) => x.name === v.name);
    return cm && m && cm.data?.[kSyncScriptKey] !== undefined && cmd.includes(`${m.mountPath.replace(/\/$/, "")}/${kSyncScriptKey}`);
  });
  if (!script_ok) fail(`${sid}: does not run ${kSyncScriptKey} from a ConfigMap of this kustomization mounted into it`);
  const psc = pod.securityContext ?? {};
  const csc = sc.securityContext ?? {};
  if (!(psc.runAsNonRoot || csc.runAsNonRoot)) fail(`${sid}: runAsNonRoot is not set`);
  if ((csc.runAsUser ?? psc.runAsUser) !== 1000) fail(`${sid}: must run as uid 1000, the replicas' uid (they read what it writes)`);
  if (csc.readOnlyRootFilesystem !== true || csc.allowPrivilegeEscalation !== false || !(csc.capabilities?.drop ?? []).includes("ALL")) {
    fail(`${sid}: readOnlyRootFilesystem, allowPrivilegeEscalation: false and dropping ALL capabilities are required`);
  }
  if (!sc.resources?.limits?.cpu || !sc.resources?.limits?.memory) fail(`${sid}: cpu and memory limits required`);
}

// Where a Rollout's references are looked up: its own render, the other sources of an Argo CD
// Application that deploys it, and the kustomizations that only route (istio, gateway).
function deployed_with(render) {
  const out = [{ render, default_ns: null }];
  for (const app of applications()) {
    const srcs = app_sources(app);
    if (!srcs.some((s) => s.render === render)) continue;
    for (const s of srcs) if (s.render !== render) out.push({ render: s.render, default_ns: app.spec?.destination?.namespace ?? null });
  }
  if (out.length === 1) {
    for (const [r, objs] of Object.entries(renders)) {
      if (r === render || r.startsWith("base-") || r.startsWith("file:")) continue;
      if (objs.some((o) => o.kind === "VirtualService") && !objs.some((o) => ["Deployment", "Rollout"].includes(o.kind))) {
        out.push({ render: r, default_ns: null });
      }
    }
  }
  return out;
}
function find_deployed(sets, kind, ns, name) {
  for (const { render, default_ns } of sets) {
    const o = (renders[render] ?? []).find((x) => x.kind === kind && x.metadata?.name === name &&
      (x.metadata?.namespace ?? default_ns ?? "") === ns);
    if (o) return { render, obj: o };
  }
  return null;
}
function all_deployed(sets, kind, ns) {
  const out = [];
  for (const { render, default_ns } of sets) {
    for (const o of (renders[render] ?? []).filter((x) => x.kind === kind && (x.metadata?.namespace ?? default_ns ?? "") === ns)) {
      out.push({ render, obj: o });
    }
  }
  return out;
}

const args_used = (text) => [...String(text).matchAll(/\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}/g)].map((m) => m[1]);

// An AnalysisTemplate: its queries read tideserve's exported metrics of the canary pods per model
// version, every metric can fail the analysis, and every argument it uses is declared.
function check_analysis_template(render, at, fail) {
  const aid = id_of({ render, obj: at });
  const declared = new Set((at.spec?.args ?? []).map((a) => a.name));
  const metrics = at.spec?.metrics ?? [];
  if (!metrics.length) fail(`${aid}: no metrics`);
  let errors_metric = false;
  let p99_metric = false;
  for (const m of metrics) {
    const mid = `${aid}: metric ${m.name}`;
    for (const a of args_used(JSON.stringify(m))) if (!declared.has(a)) fail(`${mid} uses {{args.${a}}}, which spec.args does not declare`);
    const q = m.provider?.prometheus?.query;
    if (!q || !m.provider?.prometheus?.address) { fail(`${mid}: needs provider.prometheus with address and query`); continue; }
    if (typeof m.failureLimit !== "number") fail(`${mid}: set failureLimit: the failed measurements allowed before the rollout aborts`);
    if (!m.failureCondition && !m.successCondition) fail(`${mid}: neither successCondition nor failureCondition: it can never fail the canary`);
    if (!m.interval) fail(`${mid}: no interval: measured once instead of through the canary`);
    for (const name of metric_names_in(q)) {
      const base = name.replace(/_(bucket|sum|count)$/, "");
      if (!known_metrics.has(name) && !known_metrics.has(base)) {
        fail(`${mid} queries ${name}, which tideserve does not export (deploy/validate/server-metrics.txt; recorded series lack the ${kHashSeriesLabel} label)`);
      }
    }
    // Every selector of a tideserve series names the canary pods and the model version by arguments.
    const placeheld = String(q).replace(/\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}/g, "@arg:$1@");
    const selectors = [...placeheld.matchAll(/(tideserve_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)];
    if (!selectors.length) fail(`${mid}: its query selects no tideserve series`);
    for (const [, name, body] of selectors) {
      if (!new RegExp(`(^|[,\\s])${kHashSeriesLabel}\\s*=\\s*"@arg:[A-Za-z0-9_-]+@"`).test(body)) {
        fail(`${mid}: ${name}{...} does not select the canary pods (${kHashSeriesLabel}="{{args.<hash>}}"): it would judge the stable pods too`);
      }
      if (!/(^|[,\s])version\s*=~?\s*"@arg:version@"/.test(body)) fail(`${mid}: ${name}{...} does not select the model version by {{args.version}}`);
    }
    if (/tideserve_model_requests_total/.test(q) && /code\s*=~\s*"5\.\."/.test(q)) errors_metric = true;
    if (/histogram_quantile\(\s*0\.99\s*,/.test(q) && /tideserve_model_request_duration_seconds_bucket/.test(q)) p99_metric = true;
  }
  if (!declared.has("version")) fail(`${aid}: no argument version (the model version the analysis judges)`);
  if (!errors_metric) fail(`${aid}: no metric on the 5xx ratio of tideserve_model_requests_total (code=~"5..")`);
  if (!p99_metric) fail(`${aid}: no metric on the p99 of tideserve_model_request_duration_seconds`);
}

// A Rollout: takes over the Deployment, steps 10 -> 50 -> 100 with automatic analysis and abort,
// and shifts every weighted route to the Istio subsets it names.
function check_rollout(render, ro, fail) {
  const objs = renders[render];
  const rid = id_of({ render, obj: ro });
  const sets = deployed_with(render);
  const ns = ns_of(ro);
  const wr = ro.spec?.workloadRef;
  const d = wr && objs.find((o) => o.kind === "Deployment" && o.metadata?.name === wr.name && ns_of(o) === ns);
  if (!wr || wr.kind !== "Deployment" || wr.apiVersion !== "apps/v1") fail(`${rid}: workloadRef must name the apps/v1 Deployment (one pod template, the one the overlays patch)`);
  else if (!d) fail(`${rid}: workloadRef names Deployment ${wr.name}, which is not part of this kustomization`);
  if (ro.spec?.template) fail(`${rid}: has its own template besides workloadRef`);
  if (d && !same_labels(ro.spec?.selector?.matchLabels, d.spec?.selector?.matchLabels)) {
    fail(`${rid}: selector ${JSON.stringify(ro.spec?.selector?.matchLabels)} is not the Deployment's ${JSON.stringify(d.spec?.selector?.matchLabels)}`);
  }
  const hpa = objs.find((o) => o.kind === "HorizontalPodAutoscaler" && o.spec?.scaleTargetRef?.kind === "Rollout" && o.spec.scaleTargetRef.name === ro.metadata?.name);
  if (!hpa) fail(`${rid}: no HorizontalPodAutoscaler scales it`);
  if (hpa && ro.spec?.replicas !== undefined) fail(`${rid}: replicas is set while the HPA scales it (Argo CD and the HPA would fight)`);
  if (ro.spec?.progressDeadlineAbort !== true) fail(`${rid}: progressDeadlineAbort must be true (a canary whose pods never become ready aborts)`);

  const canary = ro.spec?.strategy?.canary;
  if (!canary) { fail(`${rid}: strategy.canary is required`); return; }
  const steps = canary.steps ?? [];
  const weights = steps.filter((s) => s.setWeight !== undefined).map((s) => s.setWeight);
  if (JSON.stringify(weights) !== JSON.stringify(kCanaryWeights)) fail(`${rid}: setWeight steps ${JSON.stringify(weights)}, want ${JSON.stringify(kCanaryWeights)}`);
  steps.forEach((s, i) => {
    if (s.pause && s.pause.duration === undefined) fail(`${rid}: step ${i} pauses until a person promotes it: give it a duration (promotion is automatic, abort is the analysis')`);
  });
  // Analysis: in the background from the 10 % stage on, or as a step after each weight.
  const first_weight = steps.findIndex((s) => s.setWeight !== undefined);
  const bg = canary.analysis;
  const step_analyses = steps.filter((s) => s.analysis).map((s) => s.analysis);
  const analyses = [...(bg ? [bg] : []), ...step_analyses];
  if (!analyses.length || analyses.every((a) => !(a.templates ?? []).length)) fail(`${rid}: no analysis: nothing would abort a bad canary`);
  if (bg && (bg.startingStep ?? 0) > first_weight + 1) fail(`${rid}: the background analysis starts at step ${bg.startingStep}, after the 10 % stage`);
  if (!bg && steps.some((s, i) => s.setWeight !== undefined && !steps[i + 1]?.analysis && !steps[i + 2]?.analysis)) {
    fail(`${rid}: without a background analysis every setWeight needs an analysis step after it`);
  }
  let hash_arg = null;
  for (const a of analyses) {
    const given = new Map((a.args ?? []).map((x) => [x.name, x]));
    for (const [n, x] of given) if (x.valueFrom?.podTemplateHashValue === "Latest") hash_arg = n;
    for (const t of a.templates ?? []) {
      if (t.clusterScope) { fail(`${rid}: analysis template ${t.templateName} is a ClusterAnalysisTemplate; keep it in the namespace`); continue; }
      const found = find_deployed(sets, "AnalysisTemplate", ns, t.templateName);
      if (!found) { fail(`${rid}: analysis template ${t.templateName} is not deployed with it (namespace ${ns || "(none)"})`); continue; }
      const declared = found.obj.spec?.args ?? [];
      for (const arg of declared) {
        if (arg.value === undefined && arg.valueFrom === undefined && !given.has(arg.name)) fail(`${rid}: does not give ${t.templateName} its argument ${arg.name}`);
      }
      for (const n of given.keys()) if (!declared.some((x) => x.name === n)) fail(`${rid}: gives ${t.templateName} an argument ${n} it does not declare`);
      const text = JSON.stringify(found.obj.spec?.metrics ?? []);
      if (hash_arg && !text.includes(`${kHashSeriesLabel}=\\"{{args.${hash_arg}}}\\"`)) {
        fail(`${rid}: ${t.templateName}'s queries do not select the canary by {{args.${hash_arg}}} (podTemplateHashValue: Latest)`);
      }
    }
  }
  if (!hash_arg) fail(`${rid}: no analysis argument takes podTemplateHashValue: Latest (the canary pods' hash)`);
  // The canary analysis reads the hash label from the scrape: a ServiceMonitor copies it.
  const service = objs.find((o) => o.kind === "Service");
  const monitors = Object.values(renders).flat().filter((o) => o.kind === "ServiceMonitor" &&
    label_match(o.spec?.selector?.matchLabels, service?.metadata?.labels) &&
    (o.spec?.namespaceSelector?.any === true || (o.spec?.namespaceSelector?.matchNames ?? []).includes(ns)));
  if (!monitors.length) fail(`${rid}: no ServiceMonitor scrapes Service ${service?.metadata?.name ?? "?"} in namespace ${ns}: the analysis would have no data`);
  else if (!monitors.some((m) => (m.spec?.podTargetLabels ?? []).includes(kHashLabel))) {
    fail(`${rid}: no ServiceMonitor scraping namespace ${ns} has podTargetLabels ${kHashLabel}: the analysis cannot tell the canary's series apart`);
  }

  // Istio: subset-level traffic splitting on the DestinationRule's subsets.
  if (canary.canaryService || canary.stableService) {
    for (const s of [canary.canaryService, canary.stableService].filter(Boolean)) {
      if (!objs.some((o) => o.kind === "Service" && o.metadata?.name === s)) fail(`${rid}: Service ${s} is not part of this kustomization`);
    }
  }
  const istio = canary.trafficRouting?.istio;
  if (!istio) { fail(`${rid}: no trafficRouting.istio: the canary would get traffic by pod count, not weight`); return; }
  const drr = istio.destinationRule ?? {};
  const dr = drr.name && find_deployed(sets, "DestinationRule", ns, drr.name);
  if (!dr) { fail(`${rid}: DestinationRule ${drr.name ?? "(unset)"} is not deployed with it (namespace ${ns || "(none)"})`); return; }
  const subsets = dr.obj.spec?.subsets ?? [];
  const stable = subsets.find((s) => s.name === drr.stableSubsetName);
  const canary_subset = subsets.find((s) => s.name === drr.canarySubsetName);
  if (!stable) fail(`${rid}: stableSubsetName ${drr.stableSubsetName} is not a subset of DestinationRule ${drr.name}`);
  if (!canary_subset) fail(`${rid}: canarySubsetName ${drr.canarySubsetName} is not a subset of DestinationRule ${drr.name}`);
  if (drr.stableSubsetName === drr.canarySubsetName) fail(`${rid}: stable and canary subsets are the same`);
  const pod_labels = d?.spec?.template?.metadata?.labels ?? {};
  const without_hash = (labels) => Object.fromEntries(Object.entries(labels ?? {}).filter(([k]) => k !== kHashLabel));
  const canary_pods = { ...pod_labels, ...(canary.canaryMetadata?.labels ?? {}) };
  const stable_pods = { ...pod_labels, ...(canary.stableMetadata?.labels ?? {}) };
  if (stable && canary_subset) {
    if (!label_match(without_hash(stable.labels), stable_pods)) fail(`${rid}: subset ${stable.name} ${JSON.stringify(stable.labels)} does not select the stable pods ${JSON.stringify(stable_pods)} (stableMetadata)`);
    if (!label_match(without_hash(canary_subset.labels), canary_pods)) fail(`${rid}: subset ${canary_subset.name} ${JSON.stringify(canary_subset.labels)} does not select the canary pods ${JSON.stringify(canary_pods)} (canaryMetadata)`);
    if (label_match(without_hash(canary_subset.labels), stable_pods)) fail(`${rid}: subset ${canary_subset.name} also selects the stable pods: canaryMetadata must set a label it selects by`);
    if (label_match(without_hash(stable.labels), canary_pods)) fail(`${rid}: subset ${stable.name} also selects the canary pods: stableMetadata and canaryMetadata must differ`);
  }
  const host = dr.obj.spec?.host;
  const to_subset = (dst, subset) => dst.destination?.host === host && dst.destination?.subset === subset;
  const managed = new Map(); // VirtualService name -> route names
  for (const v of istio.virtualServices ?? (istio.virtualService ? [istio.virtualService] : [])) {
    managed.set(v.name, new Set(v.routes ?? []));
    const vs = find_deployed(sets, "VirtualService", ns, v.name);
    if (!vs) { fail(`${rid}: VirtualService ${v.name} is not deployed with it (namespace ${ns || "(none)"})`); continue; }
    if (!(v.routes ?? []).length) fail(`${rid}: VirtualService ${v.name}: name the routes whose weights it sets`);
    for (const rn of v.routes ?? []) {
      const r = (vs.obj.spec?.http ?? []).find((x) => x.name === rn);
      if (!r) { fail(`${rid}: VirtualService ${v.name} has no http route ${rn}`); continue; }
      const dsts = r.route ?? [];
      if (dsts.length !== 2 || !dsts.some((x) => to_subset(x, drr.stableSubsetName)) || !dsts.some((x) => to_subset(x, drr.canarySubsetName))) {
        fail(`${rid}: VirtualService ${v.name} route ${rn} must have exactly the two destinations ${host} subsets ${drr.stableSubsetName} and ${drr.canarySubsetName}`);
      }
    }
  }
  // Every weighted split between the two subsets belongs to the Rollout, or it keeps its static
  // weights through the canary; the header route to the canary stays for testers.
  let header_route = false;
  for (const { obj: vs } of all_deployed(sets, "VirtualService", ns)) {
    for (const r of vs.spec?.http ?? []) {
      const dsts = r.route ?? [];
      if (dsts.some((x) => to_subset(x, drr.stableSubsetName)) && dsts.some((x) => to_subset(x, drr.canarySubsetName)) &&
        !managed.get(vs.metadata?.name)?.has(r.name)) {
        fail(`${rid}: VirtualService ${vs.metadata?.name} route ${r.name ?? "?"} splits ${drr.stableSubsetName}/${drr.canarySubsetName} but the Rollout does not manage it`);
      }
      if ((r.match ?? []).some((m) => m.headers?.version?.exact === "v2") && dsts.length && dsts.every((x) => to_subset(x, drr.canarySubsetName))) header_route = true;
    }
  }
  if (!header_route) fail(`${rid}: no route deployed with it sends header version: v2 to the canary subset ${drr.canarySubsetName}`);
}

// Argo CD: the Applications of deploy/k8s/argocd.
function applications() {
  return (renders.argocd ?? []).filter((o) => o.kind === "Application");
}
function app_sources(app) {
  const srcs = app.spec?.sources ?? (app.spec?.source ? [app.spec.source] : []);
  return srcs.map((s) => ({ ...s, render: String(s.path ?? "").replace(/^deploy\/k8s\//, "").replace(/\/$/, "").replaceAll("/", "-") }));
}
const glob_match = (pattern, value) => new RegExp(`^${String(pattern).split("*").map(escape_re).join(".*")}$`).test(String(value));

function check_applications(fail) {
  const objs = renders.argocd ?? [];
  const apps = applications();
  const projects = objs.filter((o) => o.kind === "AppProject");
  if (!apps.length) { fail("argocd: no Argo CD Application"); return; }
  const deploying = (r) => apps.filter((a) => app_sources(a).some((s) => s.render === r));
  for (const app of apps) {
    const aid = id_of({ render: "argocd", obj: app });
    const project = projects.find((p) => p.metadata?.name === app.spec?.project);
    if (!project) fail(`${aid}: project ${app.spec?.project} is not an AppProject of deploy/k8s/argocd`);
    const dest = app.spec?.destination ?? {};
    const dest_ns = dest.namespace;
    if (!dest_ns || !(dest.server || dest.name)) fail(`${aid}: destination needs a server (or name) and a namespace`);
    const srcs = app_sources(app);
    if (!srcs.length) fail(`${aid}: no source`);
    const seen = new Map();
    const namespaces = new Set([dest_ns]);
    let rollouts = [];
    for (const s of srcs) {
      if (!String(s.path ?? "").startsWith("deploy/k8s/") || !renders[s.render]) {
        fail(`${aid}: source path ${s.path} is not a kustomization under deploy/k8s that renders`);
        continue;
      }
      if (!s.targetRevision) fail(`${aid}: source ${s.path} has no targetRevision`);
      if (project && !(project.spec?.sourceRepos ?? []).some((r) => glob_match(r, s.repoURL))) fail(`${aid}: repoURL ${s.repoURL} is not among project ${project.metadata.name}'s sourceRepos`);
      for (const o of renders[s.render]) {
        const ons = o.metadata?.namespace ?? dest_ns;
        namespaces.add(ons);
        const key = `${o.kind}/${ons}/${o.metadata?.name}`;
        if (seen.has(key)) fail(`${aid}: ${key} comes from both ${seen.get(key)} and ${s.path}`);
        seen.set(key, s.path);
        if (o.kind === "Rollout") rollouts.push(o);
      }
      // The overlay's own namespace is the one Argo CD creates and defaults to.
      const workload = renders[s.render].find((o) => ["Rollout", "Deployment"].includes(o.kind));
      if (workload && (workload.metadata?.namespace ?? dest_ns) !== dest_ns) {
        fail(`${aid}: destination namespace ${dest_ns} is not ${s.path}'s namespace ${workload.metadata.namespace}`);
      }
    }
    if (project) {
      for (const n of namespaces) {
        if (!(project.spec?.destinations ?? []).some((pd) => glob_match(pd.namespace ?? "*", n) && (!pd.server || !dest.server || glob_match(pd.server, dest.server)))) {
          fail(`${aid}: project ${project.metadata.name} does not allow namespace ${n} on ${dest.server ?? dest.name}`);
        }
      }
    }
    // Argo Rollouts writes the weights and the subsets' hash labels during a canary: the
    // Application must neither report nor undo that.
    if (rollouts.some((r) => r.spec?.strategy?.canary?.trafficRouting?.istio)) {
      const ig = app.spec?.ignoreDifferences ?? [];
      const covers = (kind, re) => ig.some((x) => x.group === "networking.istio.io" && x.kind === kind &&
        [...(x.jqPathExpressions ?? []), ...(x.jsonPointers ?? [])].some((p) => re.test(p)));
      if (!covers("VirtualService", /weight|^\/spec\/http/)) fail(`${aid}: ignoreDifferences does not cover the VirtualService route weights Argo Rollouts sets`);
      if (!covers("DestinationRule", new RegExp(`${kHashLabel}|labels|^/spec/subsets`))) fail(`${aid}: ignoreDifferences does not cover the DestinationRule subset labels Argo Rollouts sets`);
      if (!(app.spec?.syncPolicy?.syncOptions ?? []).includes("RespectIgnoreDifferences=true")) {
        fail(`${aid}: syncOptions needs RespectIgnoreDifferences=true, or a sync resets the canary's weights`);
      }
    }
  }
  const staging = deploying("overlays-staging");
  const production = deploying("overlays-production");
  if (staging.length !== 1) fail(`argocd: want one Application deploying deploy/k8s/overlays/staging, found ${staging.length}`);
  if (production.length !== 1) fail(`argocd: want one Application deploying deploy/k8s/overlays/production, found ${production.length}`);
  for (const app of staging) {
    const a = app.spec?.syncPolicy?.automated;
    if (!a || a.enabled === false || a.prune !== true || a.selfHeal !== true) {
      fail(`${id_of({ render: "argocd", obj: app })}: staging syncs automatically: syncPolicy.automated with prune: true and selfHeal: true`);
    }
  }
  for (const app of production) {
    const a = app.spec?.syncPolicy?.automated;
    if (a && a.enabled !== false) fail(`${id_of({ render: "argocd", obj: app })}: production is synced by a person: no syncPolicy.automated`);
  }
}

await check("policy", async (fail) => {
  // Whole deployments only: the base's pieces (base-workload, ...) are building blocks.
  const render_names = Object.keys(renders).filter((r) => !r.startsWith("file:") && !r.startsWith("base-"));
  const must_render = ["base", "base-model-sync", "base-rollout", "base-worker", "base-redis", "overlays-dev",
    "overlays-dev-jobs", "overlays-worker-keda", "overlays-worker-hpa", "overlays-production",
    "overlays-staging", "overlays-gpu", "overlays-keda", "istio", "gateway", "monitoring", "argocd"];
  for (const r of must_render) if (!renders[r]) fail(`kustomization ${r.replace("-", "/")} was not rendered`);
  check_applications(fail);

  const recorded = new Set(prometheus_rules(all_objects).filter((r) => r.record).map((r) => r.record));
  const adapter_names = new Map(); // exposed name -> recorded series
  const adapter_rules = [];
  const adapter_external_rules = [];
  for (const { obj } of all_objects.filter((o) => o.obj.kind === "ConfigMap" && o.obj.data?.["config.yaml"])) {
    const cfg = yaml.load(obj.data["config.yaml"]);
    for (const rule of cfg?.rules ?? []) adapter_rules.push(rule);
    for (const rule of cfg?.externalRules ?? []) adapter_external_rules.push(rule);
  }
  // External metrics (the worker's HPA): a jobs gauge, by queue, taken as the max over the pods
  // (every pod exports the same value read from Redis: a sum would multiply it by the pods).
  const adapter_external = new Map();
  for (const rule of adapter_external_rules) {
    const series = [...metric_names_in(rule.seriesQuery)][0];
    const as = rule.name?.as ?? series;
    adapter_external.set(as, rule);
    if (!jobs_metrics.has(series)) fail(`adapter externalRules ${as}: series ${series} is not a worker-mode family (deploy/validate/jobs-metrics.txt)`);
    if (!new RegExp(rule.name?.matches ?? "^$").test(series ?? "")) fail(`adapter externalRules ${as}: name.matches does not match ${series}`);
    const q = String(rule.metricsQuery ?? "");
    if (!q.includes("<<.LabelMatchers>>")) fail(`adapter externalRules ${as}: metricsQuery must use <<.LabelMatchers>> (the HPA's selector and namespace)`);
    if (!/^\s*max\s*\(/.test(q)) fail(`adapter externalRules ${as}: metricsQuery must aggregate with max: every pod exports the same queue gauge`);
    if (!outer_by_labels(q).includes("queue")) fail(`adapter externalRules ${as}: metricsQuery must keep queue in its by (the HPA selects a queue)`);
    if (!rule.resources?.overrides?.namespace) fail(`adapter externalRules ${as}: map the namespace label (resources.overrides.namespace) so that a namespace's HPA reads its own queue`);
  }
  // The model repository PVC(s) a worker may read.
  const model_claims = new Set(["base-model-volume", ...render_names].flatMap((r) => (renders[r] ?? []).filter((o) => o.kind === "PersistentVolumeClaim").map((o) => o.metadata?.name)));

  for (const render of render_names) {
    const objs = renders[render];
    const item = (obj) => ({ render, obj });
    const deployments = objs.filter((o) => o.kind === "Deployment" && !is_worker(o));
    const workers = objs.filter(is_worker);
    const worker_names = new Set(workers.map((w) => w.metadata?.name));
    // The server's Service and PDB: not those of the workers or the dev Redis.
    const other_pods = objs.filter((o) => is_worker(o) || o.kind === "StatefulSet").flatMap((o) => pod_templates(o).map((t) => t.metadata.labels ?? {}));
    const of_others = (sel) => other_pods.some((l) => label_match(sel, l));
    const services = objs.filter((o) => o.kind === "Service" && !of_others(o.spec?.selector));
    const is_workload = deployments.length > 0;
    if (is_workload && deployments.length !== 1) fail(`${render}: expected one Deployment`);

    for (const d of deployments) {
      const id = id_of(item(d));
      const pod = d.spec?.template?.spec ?? {};
      const pod_labels = d.spec?.template?.metadata?.labels ?? {};
      if (!label_match(d.spec?.selector?.matchLabels, pod_labels)) fail(`${id}: selector does not match the pod labels`);
      const c = (pod.containers ?? []).find((x) => x.name === "tideserve");
      if (!c) { fail(`${id}: no container named tideserve`); continue; }
      const env = env_of(c);
      const port = Number(env.PORT ?? kServerPort);
      const http_port = (c.ports ?? []).find((p) => p.containerPort === port);
      if (!http_port) fail(`${id}: no containerPort ${port} (PORT)`);
      const probe_port_ok = (p) => p === port || (http_port && p === http_port.name);
      for (const [probe, want] of [["startupProbe", kReadyPath], ["readinessProbe", kReadyPath], ["livenessProbe", kLivePath]]) {
        const get = c[probe]?.httpGet;
        if (!get) { fail(`${id}: ${probe} must be an httpGet probe`); continue; }
        if (get.path !== want) fail(`${id}: ${probe} path ${get.path}, want ${want}`);
        if (!probe_port_ok(get.port)) fail(`${id}: ${probe} port ${get.port} is not the server's port ${port}`);
      }
      const sp = c.startupProbe ?? {};
      const startup_budget = (sp.failureThreshold ?? 3) * (sp.periodSeconds ?? 10);
      if (startup_budget < 120) fail(`${id}: startupProbe allows ${startup_budget} s for the model load, want >= 120 s`);
      if ((c.livenessProbe?.initialDelaySeconds ?? 0) > 0 || (c.readinessProbe?.initialDelaySeconds ?? 0) > 30) {
        fail(`${id}: use the startupProbe for slow starts, not initialDelaySeconds`);
      }
      const pre_stop = c.lifecycle?.preStop;
      let sleep_s = NaN;
      if (pre_stop?.sleep) sleep_s = Number(pre_stop.sleep.seconds);
      else if (pre_stop?.exec?.command) {
        const cmd = pre_stop.exec.command;
        if (/(^|\/)sleep$/.test(cmd[0])) sleep_s = Number(cmd[1]);
      }
      if (!Number.isFinite(sleep_s) || sleep_s <= 0) fail(`${id}: preStop must sleep a positive number of seconds`);
      const drain = Number(env.DRAIN_DELAY ?? 5);
      const shutdown = Number(env.SHUTDOWN_TIMEOUT ?? 30);
      const grace = pod.terminationGracePeriodSeconds ?? 30;
      if (!(grace > sleep_s + drain + shutdown)) {
        fail(`${id}: terminationGracePeriodSeconds ${grace} must exceed preStop sleep ${sleep_s} + DRAIN_DELAY ${drain} + SHUTDOWN_TIMEOUT ${shutdown}`);
      }
      const psc = pod.securityContext ?? {};
      const csc = c.securityContext ?? {};
      if (!(psc.runAsNonRoot || csc.runAsNonRoot)) fail(`${id}: runAsNonRoot is not set`);
      if ((csc.runAsUser ?? psc.runAsUser) !== 1000) fail(`${id}: must run as uid 1000 (the image's user)`);
      if (csc.readOnlyRootFilesystem !== true) fail(`${id}: readOnlyRootFilesystem must be true`);
      if (csc.allowPrivilegeEscalation !== false) fail(`${id}: allowPrivilegeEscalation must be false`);
      if (csc.privileged) fail(`${id}: must not be privileged`);
      if (!(csc.capabilities?.drop ?? []).includes("ALL")) fail(`${id}: capabilities must drop ALL`);
      if (csc.capabilities?.add?.length) fail(`${id}: must not add capabilities`);
      for (const k of ["cpu", "memory"]) {
        if (!c.resources?.requests?.[k] || !c.resources?.limits?.[k]) fail(`${id}: ${k} request and limit required`);
      }
      const gpu_req = c.resources?.requests?.["nvidia.com/gpu"];
      const gpu_lim = c.resources?.limits?.["nvidia.com/gpu"];
      // tideserve computes on CPUs: a GPU is requested by overlays/gpu only (for a GPU backend).
      const gpu_placement = Object.keys(pod.nodeSelector ?? {}).some((k) => k.startsWith("nvidia.com/")) ||
        (pod.tolerations ?? []).some((t) => String(t.key ?? "").startsWith("nvidia.com/"));
      if (render === "overlays-gpu" && gpu_lim === undefined) fail(`${id}: the gpu overlay must request nvidia.com/gpu`);
      if (render !== "overlays-gpu" && (gpu_lim !== undefined || gpu_req !== undefined)) {
        fail(`${id}: requests nvidia.com/gpu, but tideserve computes only on CPUs (a GPU belongs in overlays/gpu alone)`);
      }
      if (render !== "overlays-gpu" && gpu_placement) fail(`${id}: nodeSelector or tolerations for nvidia.com GPU nodes outside overlays/gpu`);
      if (gpu_req !== gpu_lim) fail(`${id}: nvidia.com/gpu requests must equal limits`);
      if (gpu_lim !== undefined) {
        const tol = (pod.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu" && t.effect === "NoSchedule");
        if (!tol) fail(`${id}: GPU pods need a toleration for nvidia.com/gpu:NoSchedule`);
        if (!pod.nodeSelector || Object.keys(pod.nodeSelector).length === 0) fail(`${id}: GPU pods need a nodeSelector`);
      }
      // The model: the repository (MODEL_REPOSITORY) on a read-only mount of a read-only PVC,
      // polled for new versions; or, in dev, one model directory (MODEL_NAME) baked into the image.
      const raw_env = c.env ?? [];
      if (env.MODEL_REPOSITORY !== undefined && env.MODEL_NAME !== undefined) fail(`${id}: MODEL_REPOSITORY and MODEL_NAME are both set (one or the other)`);
      if (env.MODEL_REPOSITORY !== undefined) {
        const repo_path = String(env.MODEL_REPOSITORY).replace(/\/$/, "");
        const mount = (c.volumeMounts ?? []).find((m) => m.mountPath.replace(/\/$/, "") === repo_path);
        if (!mount) fail(`${id}: MODEL_REPOSITORY ${env.MODEL_REPOSITORY} is not a mounted volume`);
        else {
          if (mount.readOnly !== true) fail(`${id}: model mount ${mount.mountPath} must be readOnly (the model-sync Job is the only writer)`);
          const vol = (pod.volumes ?? []).find((v) => v.name === mount.name);
          if (!vol?.persistentVolumeClaim) fail(`${id}: model volume ${mount.name} must come from a PVC`);
          else {
            if (vol.persistentVolumeClaim.readOnly !== true) fail(`${id}: model PVC must be mounted readOnly`);
            const claim = vol.persistentVolumeClaim.claimName;
            if (!objs.some((o) => o.kind === "PersistentVolumeClaim" && o.metadata?.name === claim)) {
              fail(`${id}: PVC ${claim} is not part of this kustomization`);
            }
          }
        }
        if (env.MODEL_CONTROL !== "poll") fail(`${id}: MODEL_CONTROL ${env.MODEL_CONTROL ?? "(unset)"}, want poll: replicas pick new versions up from the volume`);
        const poll = env.REPOSITORY_POLL_SECONDS;
        if (poll !== undefined && !(/^\d+$/.test(String(poll)) && Number(poll) >= 1 && Number(poll) <= 300)) {
          fail(`${id}: REPOSITORY_POLL_SECONDS ${poll} must be a whole number of seconds in 1..300`);
        }
      } else if (!is_dev(render)) {
        fail(`${id}: MODEL_REPOSITORY is not set: outside dev the replicas serve the model repository on the volume`);
      } else {
        const model = env.MODEL_NAME ?? "";
        if (!model) fail(`${id}: MODEL_NAME is not set`);
        else if (!model.startsWith("/opt/tideserve/models/")) fail(`${id}: dev's MODEL_NAME ${model} is not the model baked into the image`);
        if (!env.MODEL_VERSION) fail(`${id}: MODEL_VERSION is not set`);
      }
      // The admin API's key: a Secret of its own, never the API key's.
      const admin = raw_env.find((e) => e.name === "ADMIN_KEY");
      if (admin) {
        const ref = admin.valueFrom?.secretKeyRef;
        if (admin.value !== undefined || !ref) fail(`${id}: ADMIN_KEY must come from a Secret (valueFrom.secretKeyRef), not a literal`);
        const api = raw_env.find((e) => e.name === "API_KEY")?.valueFrom?.secretKeyRef;
        if (ref && api && ref.name === api.name && ref.key === api.key) fail(`${id}: ADMIN_KEY and API_KEY come from the same Secret key`);
      }
      // Under an Argo Rollout (workloadRef) the Deployment is only the pod template.
      const rollout = rollout_of(objs, d);
      if (rollout) {
        if (d.spec?.replicas !== 0) fail(`${id}: Rollout ${rollout.metadata?.name} runs its pods: the Deployment must have replicas: 0 (has ${d.spec?.replicas ?? "the default 1"})`);
      } else {
        if (!is_dev(render) && (d.spec?.replicas ?? 1) < 2) fail(`${id}: at least 2 replicas outside dev`);
        if (is_dev(render) && d.spec?.replicas !== 1) fail(`${id}: dev runs 1 replica`);
        if (render === "base" && d.spec?.replicas !== 3) fail(`${id}: base runs 3 replicas`);
      }
      const ann = d.spec?.template?.metadata?.annotations ?? {};
      if (ann["prometheus.io/scrape"] !== "true" || Number(ann["prometheus.io/port"]) !== port || ann["prometheus.io/path"] !== "/metrics") {
        fail(`${id}: prometheus.io annotations must say scrape "true", port ${port}, path /metrics`);
      }
      const spread = pod.topologySpreadConstraints ?? [];
      if (!spread.some((t) => t.topologyKey === "kubernetes.io/hostname" && label_match(t.labelSelector?.matchLabels, pod_labels))) {
        fail(`${id}: no topology spread across nodes selecting these pods`);
      }
      if (pod_labels.version !== "v1") fail(`${id}: pods need the version: v1 label (Istio subset v1)`);

      // Service: ClusterIP, 80 -> the server port, selecting these pods.
      if (services.length !== 1) fail(`${render}: expected one Service`);
      for (const s of services) {
        const sid = id_of(item(s));
        if ((s.spec?.type ?? "ClusterIP") !== "ClusterIP") fail(`${sid}: type must be ClusterIP`);
        if (!label_match(s.spec?.selector, pod_labels)) fail(`${sid}: selector does not match the pods`);
        const p80 = (s.spec?.ports ?? []).find((p) => p.port === 80);
        if (!p80) fail(`${sid}: no port 80`);
        else if (!probe_port_ok(p80.targetPort)) fail(`${sid}: port 80 targets ${p80.targetPort}, not the server port ${port}`);
      }
      for (const pdb of objs.filter((o) => o.kind === "PodDisruptionBudget" && !of_others(o.spec?.selector?.matchLabels))) {
        const pid = id_of(item(pdb));
        if (!label_match(pdb.spec?.selector?.matchLabels, pod_labels)) fail(`${pid}: selector does not match the pods`);
        if (pdb.spec?.maxUnavailable !== 1) fail(`${pid}: maxUnavailable must be 1`);
      }
      if (!objs.some((o) => o.kind === "PodDisruptionBudget" && !of_others(o.spec?.selector?.matchLabels))) fail(`${render}: no PodDisruptionBudget`);

      // Autoscaling: exactly one of HPA / ScaledObject.
      const of_worker = (o) => o.spec?.scaleTargetRef?.kind === "Deployment" && worker_names.has(o.spec.scaleTargetRef.name);
      const hpas = objs.filter((o) => o.kind === "HorizontalPodAutoscaler" && !of_worker(o));
      const scaled = objs.filter((o) => o.kind === "ScaledObject" && !of_worker(o));
      if (hpas.length + scaled.length !== 1) fail(`${render}: want exactly one autoscaler (HPA or ScaledObject), found ${hpas.length + scaled.length}`);
      if (render === "overlays-keda" && scaled.length !== 1) fail(`${render}: keda must use a ScaledObject`);
      // The HPA scales what runs the pods: the Rollout where one takes over the Deployment.
      const target_ok = rollout
        ? (ref) => ref?.kind === "Rollout" && ref?.apiVersion === "argoproj.io/v1alpha1" && ref?.name === rollout.metadata?.name
        : (ref) => ref?.kind === "Deployment" && ref?.name === d.metadata?.name;
      const target_name = rollout ? `Rollout ${rollout.metadata?.name}` : `Deployment ${d.metadata?.name}`;
      for (const h of hpas) {
        const hid = id_of(item(h));
        if (!target_ok(h.spec?.scaleTargetRef)) fail(`${hid}: scaleTargetRef does not name ${target_name}`);
        if (!is_dev(render) && (h.spec?.minReplicas !== 2 || h.spec?.maxReplicas !== 10)) fail(`${hid}: want minReplicas 2, maxReplicas 10`);
        const metrics = h.spec?.metrics ?? [];
        const res = (name) => metrics.find((m) => m.type === "Resource" && m.resource?.name === name)?.resource?.target?.averageUtilization;
        if (res("cpu") !== 70) fail(`${hid}: want CPU utilization target 70`);
        if (res("memory") !== 80) fail(`${hid}: want memory utilization target 80`);
        const pods_metric = metrics.find((m) => m.type === "Pods");
        if (pods_metric?.pods?.metric?.name !== kAdapterMetric) fail(`${hid}: want the Pods metric ${kAdapterMetric}`);
        const up = h.spec?.behavior?.scaleUp;
        const down = h.spec?.behavior?.scaleDown;
        if (!up || !down) fail(`${hid}: behavior.scaleUp and scaleDown are required`);
        else {
          const first_period = Math.min(...(up.policies ?? []).map((p) => p.periodSeconds));
          if ((up.stabilizationWindowSeconds ?? 0) + first_period > 30) fail(`${hid}: scale-up must react within 30 s`);
          if ((down.stabilizationWindowSeconds ?? 300) < 60) fail(`${hid}: scale-down needs a stabilization window of at least 60 s`);
        }
      }
      for (const so of scaled) {
        const sid = id_of(item(so));
        if (!target_ok(so.spec?.scaleTargetRef)) fail(`${sid}: scaleTargetRef does not name ${target_name}`);
        const types = (so.spec?.triggers ?? []).map((t) => t.type);
        for (const t of ["cpu", "memory", "prometheus", "cron"]) if (!types.includes(t)) fail(`${sid}: no ${t} trigger`);
        for (const t of (so.spec?.triggers ?? []).filter((t) => t.type === "prometheus")) {
          for (const name of metric_names_in(t.metadata?.query)) {
            if (!series_known(name, recorded)) fail(`${sid}: prometheus trigger queries ${name}, which no rule records and the server does not export`);
          }
        }
        for (const t of (so.spec?.triggers ?? []).filter((t) => t.type === "cron")) {
          const m = t.metadata ?? {};
          if (!m.timezone || !m.start || !m.end || !(Number(m.desiredReplicas) > 0)) fail(`${sid}: cron trigger needs timezone, start, end, desiredReplicas`);
        }
        const up = so.spec?.advanced?.horizontalPodAutoscalerConfig?.behavior?.scaleUp;
        if (!up) fail(`${sid}: advanced.horizontalPodAutoscalerConfig.behavior.scaleUp is required`);
      }
    }

    // Istio: routes point at the Service and at subsets the DestinationRule defines.
    const base_pods = renders.base?.find((o) => o.kind === "Deployment")?.spec?.template?.metadata?.labels ?? {};
    const base_service = renders.base?.find((o) => o.kind === "Service");
    for (const vs of objs.filter((o) => o.kind === "VirtualService")) {
      const vid = id_of(item(vs));
      const drs = objs.filter((o) => o.kind === "DestinationRule");
      const subsets = new Set(drs.flatMap((r) => (r.spec?.subsets ?? []).map((s) => `${r.spec.host}/${s.name}`)));
      const http = vs.spec?.http ?? [];
      if (!http.some((r) => (r.match ?? []).some((m) => m.headers?.version?.exact === "v2") && r.route?.every((d) => d.destination?.subset === "v2"))) {
        fail(`${vid}: no route sending header version: v2 to subset v2`);
      }
      for (const r of http) {
        const total = (r.route ?? []).reduce((a, d) => a + (d.weight ?? (r.route.length === 1 ? 100 : 0)), 0);
        if (total !== 100) fail(`${vid}: route ${r.name ?? "?"} weights sum to ${total}, not 100`);
        if (!r.timeout) fail(`${vid}: route ${r.name ?? "?"} has no timeout`);
        if (!r.retries) fail(`${vid}: route ${r.name ?? "?"} has no retries`);
        for (const dst of r.route ?? []) {
          const dd = dst.destination ?? {};
          if (dd.host !== base_service?.metadata?.name) fail(`${vid}: destination host ${dd.host} is not the Service ${base_service?.metadata?.name}`);
          if (!subsets.has(`${dd.host}/${dd.subset}`)) fail(`${vid}: subset ${dd.subset} of ${dd.host} is not defined by a DestinationRule`);
          const sp = (base_service?.spec?.ports ?? []).map((p) => p.port);
          if (dd.port && !sp.includes(dd.port.number)) fail(`${vid}: destination port ${dd.port.number} is not a Service port`);
        }
      }
    }
    for (const dr of objs.filter((o) => o.kind === "DestinationRule")) {
      const did = id_of(item(dr));
      const tp = dr.spec?.trafficPolicy ?? {};
      for (const f of ["http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection"]) {
        if (!(tp.connectionPool?.http?.[f] > 0)) fail(`${did}: connectionPool.http.${f} must be set`);
      }
      if (!(tp.connectionPool?.tcp?.maxConnections > 0)) fail(`${did}: connectionPool.tcp.maxConnections must be set`);
      const od = tp.outlierDetection ?? {};
      if (!(od.consecutive5xxErrors > 0) || !od.interval || !od.baseEjectionTime || !(od.maxEjectionPercent > 0)) {
        fail(`${did}: outlierDetection needs consecutive5xxErrors, interval, baseEjectionTime, maxEjectionPercent`);
      }
      const v1 = (dr.spec?.subsets ?? []).find((s) => s.name === "v1");
      if (!v1 || !label_match(v1.labels, base_pods)) fail(`${did}: subset v1 does not select the base Deployment's pods`);
      if (!(dr.spec?.subsets ?? []).some((s) => s.name === "v2" && s.labels?.version === "v2")) fail(`${did}: no subset v2 (version: v2)`);
    }

    // Monitoring: the ServiceMonitor finds the Service and its port.
    for (const sm of objs.filter((o) => o.kind === "ServiceMonitor")) {
      const sid = id_of(item(sm));
      if (!label_match(sm.spec?.selector?.matchLabels, base_service?.metadata?.labels)) fail(`${sid}: selector does not match the Service's labels`);
      const port_names = (base_service?.spec?.ports ?? []).map((p) => p.name);
      for (const ep of sm.spec?.endpoints ?? []) {
        if (!port_names.includes(ep.port)) fail(`${sid}: endpoint port ${ep.port} is not a Service port name`);
        if ((ep.path ?? "/metrics") !== "/metrics") fail(`${sid}: endpoint path ${ep.path}, want /metrics`);
      }
    }

    // The gateway: authentication, authorization, mTLS, rate limit.
    check_gateway_security(render, objs, fail, base_pods);

    // Model updates and canaries.
    check_model_volume(render, objs, fail);

    // Worker mode.
    for (const w of workers) {
      const servers = deployments.length
        ? deployments.map((d) => ({ render, obj: d }))
        : render_names.filter((r) => r !== render).flatMap((r) => renders[r].filter((o) => o.kind === "Deployment" && !is_worker(o) &&
          o.metadata?.name === "tideserve" && ns_of(o) === ns_of(w)).map((o) => ({ render: r, obj: o })));
      check_worker(render, objs, w, fail, { servers, adapter_external, model_claims });
    }
    check_redis(render, objs, fail);
    for (const pm of objs.filter((o) => o.kind === "PodMonitor")) {
      const pid = id_of(item(pm));
      const scraped = all_objects.filter(({ render: r, obj: o }) => !r.startsWith("base-") && is_worker(o) &&
        label_match(pm.spec?.selector?.matchLabels, o.spec?.template?.metadata?.labels) &&
        (pm.spec?.namespaceSelector?.any === true || (pm.spec?.namespaceSelector?.matchNames ?? []).includes(ns_of(o))));
      if (!scraped.length) fail(`${pid}: selects no worker pods in the namespaces it watches`);
      for (const { obj: o } of scraped) {
        const names = (o.spec.template.spec.containers ?? []).flatMap((ct) => (ct.ports ?? []).map((p) => p.name));
        for (const ep of pm.spec?.podMetricsEndpoints ?? []) {
          if (!names.includes(ep.port)) fail(`${pid}: endpoint port ${ep.port} is not a port name of the workers`);
          if ((ep.path ?? "/metrics") !== "/metrics") fail(`${pid}: endpoint path ${ep.path}, want /metrics`);
        }
      }
    }
    for (const ro of objs.filter((o) => o.kind === "Rollout")) check_rollout(render, ro, fail);
    for (const at of objs.filter((o) => o.kind === "AnalysisTemplate")) check_analysis_template(render, at, fail);
  }

  // Rules: every series a rule, alert or query reads is exported by the server or recorded.
  const rules = prometheus_rules(all_objects);
  if (!rules.length) fail("no PrometheusRule rules");
  for (const r of rules) {
    for (const name of metric_names_in(r.expr)) {
      if (!series_known(name, recorded)) fail(`rule ${r.record ?? r.alert}: ${name} is neither exported by the server (deploy/validate/server-metrics.txt) nor recorded`);
    }
  }
  for (const want of ["p50_pod", "p99_pod", "p50_service", "p99_service"]) {
    if (!recorded.has(`tideserve:request_duration_seconds:${want}`)) fail(`no recording rule tideserve:request_duration_seconds:${want}`);
  }
  const alerts = new Set(rules.filter((r) => r.alert).map((r) => r.alert));
  for (const a of ["TideserveHighP99Latency", "TideserveHighErrorRatio", "TideservePodNotReady", "TideserveRequestsRejected",
    "TideserveModelVersionNotLoaded"]) {
    if (!alerts.has(a)) fail(`no alert ${a}`);
  }

  // prometheus-adapter: exposes the HPA's metric from a recorded per-pod series.
  if (!adapter_rules.length) fail("no prometheus-adapter rules found");
  for (const rule of adapter_rules) {
    const series = [...metric_names_in(rule.seriesQuery)][0];
    const as = rule.name?.as;
    if (as) adapter_names.set(as, series);
    const rec = rules.find((r) => r.record === series);
    if (!rec) { fail(`adapter rule ${as}: series ${series} is not recorded by any rule`); continue; }
    if (!new RegExp(rule.name?.matches ?? "^$").test(series)) fail(`adapter rule ${as}: name.matches does not match ${series}`);
    const by = outer_by_labels(rec.expr);
    for (const label of Object.keys(rule.resources?.overrides ?? {})) {
      if (!by.includes(label)) fail(`adapter rule ${as}: label ${label} is not kept by ${series}'s by (${by.join(", ")})`);
    }
    if (!rule.metricsQuery?.includes("<<.GroupBy>>") || !rule.metricsQuery?.includes("<<.LabelMatchers>>")) {
      fail(`adapter rule ${as}: metricsQuery must use <<.LabelMatchers>> and <<.GroupBy>>`);
    }
  }
  if (!adapter_names.has(kAdapterMetric)) fail(`prometheus-adapter does not expose ${kAdapterMetric}`);
});

// ---------------------------------------------------------------------------------------------
// dashboard: parses, has the panels the issue asks for, and reads only known series.

const dashboard_exprs = [];
await check("dashboard", async (fail) => {
  const file = path.join(deploy_dir, "k8s/monitoring/grafana-dashboard.json");
  let dash;
  try {
    dash = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    fail(`${file}: ${e.message}`);
    return;
  }
  const recorded = new Set(prometheus_rules(all_objects).filter((r) => r.record).map((r) => r.record));
  const panels = dash.panels ?? [];
  const ids = new Set();
  for (const p of panels) {
    if (ids.has(p.id)) fail(`panel id ${p.id} used twice`);
    ids.add(p.id);
    if (!p.type || !p.title || !p.gridPos) fail(`panel ${p.id}: needs type, title and gridPos`);
    for (const t of p.targets ?? []) {
      if (!t.expr) { fail(`panel ${p.title}: target ${t.refId} has no expr`); continue; }
      dashboard_exprs.push({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr });
      for (const name of metric_names_in(t.expr)) {
        if (!series_known(name, recorded)) fail(`panel ${p.title}: ${name} is neither exported nor recorded`);
      }
    }
  }
  const text = panels.map((p) => `${p.title} ${(p.targets ?? []).map((t) => t.expr).join(" ")}`).join("\n");
  for (const [what, re] of [["latency percentiles", /p99_service|p99_pod/], ["throughput", /requests:rate1m|requests_total/],
    ["batch size", /tideserve_batch_size/], ["queue depth", /queue_depth/], ["replicas", /tideserve_ready/]]) {
    if (!re.test(text)) fail(`no panel for ${what}`);
  }
  for (const v of dash.templating?.list ?? []) if (!v.name) fail("template variable without a name");
});

// ---------------------------------------------------------------------------------------------
// Files for promtool: the rule groups of every PrometheusRule, and every other PromQL query
// (dashboard, adapter, KEDA, Argo Rollouts analysis) as a recording rule so that
// `promtool check rules` parses it.

fs.mkdirSync(args.out, { recursive: true });
for (const { obj } of all_objects.filter((o) => o.obj.kind === "PrometheusRule" && o.render === "monitoring")) {
  fs.writeFileSync(path.join(args.out, `${obj.metadata.name}.rules.yaml`), yaml.dump({ groups: obj.spec.groups }, { lineWidth: -1 }));
}
// The dashboard's queries, also when the dashboard check did not run.
if (dashboard_exprs.length === 0) {
  try {
    const dash = JSON.parse(fs.readFileSync(path.join(deploy_dir, "k8s/monitoring/grafana-dashboard.json"), "utf8"));
    for (const p of dash.panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) dashboard_exprs.push({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr });
    }
  } catch {
    // reported by the dashboard check
  }
}
const exprs = [...dashboard_exprs];
for (const { render, obj } of all_objects) {
  if (obj.kind === "ScaledObject") {
    for (const t of (obj.spec?.triggers ?? []).filter((t) => t.type === "prometheus")) {
      exprs.push({ where: `${render} ScaledObject trigger`, expr: t.metadata?.query });
    }
  }
  // Argo Rollouts analysis queries, with each argument at its default or a sample value.
  if (obj.kind === "AnalysisTemplate" && !render.startsWith("base-")) {
    const defaults = new Map((obj.spec?.args ?? []).map((a) => [a.name, a.value ?? "sample"]));
    for (const m of obj.spec?.metrics ?? []) {
      const q = m.provider?.prometheus?.query;
      if (!q) continue;
      const expr = String(q).replace(/\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}/g, (_, n) => defaults.get(n) ?? "sample");
      exprs.push({ where: `${render} AnalysisTemplate ${obj.metadata?.name} metric ${m.name}`, expr });
    }
  }
  if (obj.kind === "ConfigMap" && obj.data?.["config.yaml"]) {
    for (const rule of yaml.load(obj.data["config.yaml"])?.rules ?? []) {
      exprs.push({ where: `adapter seriesQuery ${rule.name?.as}`, expr: rule.seriesQuery });
      exprs.push({ where: `adapter metricsQuery ${rule.name?.as}`, expr: adapter_query(rule, 'namespace="tideserve"', "pod") });
    }
    for (const rule of yaml.load(obj.data["config.yaml"])?.externalRules ?? []) {
      exprs.push({ where: `adapter external seriesQuery ${rule.name?.as}`, expr: rule.seriesQuery });
      exprs.push({ where: `adapter external metricsQuery ${rule.name?.as}`, expr: adapter_query(rule, 'namespace="tideserve",queue="bert-base-chinese"', "queue") });
    }
  }
}
// The query prometheus-adapter sends for one namespace's pods, the way its templates expand.
export function adapter_query(rule, matchers, group_by) {
  const series = [...metric_names_in(rule.seriesQuery)][0] ?? "";
  return String(rule.metricsQuery)
    .replaceAll("<<.Series>>", series)
    .replaceAll("<<.LabelMatchers>>", matchers)
    .replaceAll("<<.GroupBy>>", group_by);
}
const grafana_vars = (e) => String(e).replaceAll("$__rate_interval", "1m").replaceAll("$__interval", "1m").replace(/\$\{?[a-z_]+\}?/g, "x");
fs.writeFileSync(
  path.join(args.out, "queries.rules.yaml"),
  yaml.dump({
    groups: [{
      name: "queries-from-dashboard-adapter-keda-analysis",
      rules: exprs.map((e, i) => ({ record: `check:query_${i}`, expr: grafana_vars(e.expr), labels: { where: e.where } })),
    }],
  }, { lineWidth: -1 }),
);
fs.writeFileSync(path.join(args.out, "adapter-queries.json"), JSON.stringify(
  all_objects.filter((o) => o.obj.kind === "ConfigMap" && o.obj.data?.["config.yaml"])
    .flatMap((o) => yaml.load(o.obj.data["config.yaml"])?.rules ?? [])
    .map((rule) => ({ as: rule.name?.as, series: [...metric_names_in(rule.seriesQuery)][0], metricsQuery: rule.metricsQuery })),
  null, 2));

process.exit(results.every((r) => r.ok) ? 0 : 1);
