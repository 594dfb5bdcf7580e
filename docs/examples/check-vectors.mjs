// Check a signer against the signer-side test vectors of docs/vectors/ (token format 1.2):
// every valid vector rebuilt byte for byte from its decoded inputs (signed target, string to
// sign, token id, both path forms), every unsignable input refused, every Content-Disposition
// value, every keyring document and every signing window as published.
//
//   node docs/examples/check-vectors.mjs [VECTORS-DIR] [--json]
//
// Prints one line per check (or, with --json, {"file": {"name": null | "why it failed"}}) and
// exits 1 when any failed. The verifier-only vectors (invalid.json) need a verifier.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  KeyringError,
  PARAMS,
  SigningError,
  contentDisposition,
  loadKeyring,
  parseKeyring,
  pathForm,
  signPath,
  signingTimes,
  stringToSign,
  tokenId,
} from "./edge-signer.mjs";

const args = process.argv.slice(2);
const json = args.includes("--json");
const dir = args.find((a) => a !== "--json") ??
  join(fileURLToPath(new URL(".", import.meta.url)), "..", "vectors");
const load = (name) => JSON.parse(readFileSync(join(dir, name), "utf8"));
const keyring = loadKeyring(join(dir, "PUBLIC-test-vector-keyring.json"));
const results = {};

/** Signing options from decoded parameter texts by wire name, as the vectors give them. */
function options(decoded) {
  const out = {};
  for (const [name, text] of Object.entries(decoded)) {
    const param = PARAMS.find((p) => p.name === name);
    if (param.option) out[param.option] = param.codec.fromText(text);
  }
  return { ...out, expiresAt: Number(decoded.Expires), now: Number(decoded.Issued) };
}

function check(file, name, run) {
  let outcome = null;
  try {
    run();
  } catch (error) {
    outcome = String(error?.message ?? error);
  }
  (results[file] ??= {})[name] = outcome;
}

function equal(what, got, want) {
  if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

function refused(run, ...kinds) {
  try {
    run();
  } catch (error) {
    if (kinds.some((kind) => error instanceof kind)) return;
    throw error;
  }
  throw new Error("accepted, but MUST be refused");
}

for (const v of load("valid.json")) {
  check("valid.json", v.name, () => {
    const key = keyring.get(v.key_id);
    const target = signPath(v.path_decoded, key, {
      ...options(v.params_decoded),
      query: v.app_query_wire,
      maxLifetime: v.verify.max_lifetime,
    });
    equal("signed_target", target, v.signed_target);
    const [path, query] = [target.slice(0, target.indexOf("?")), target.slice(target.indexOf("?") + 1)];
    const signedQuery = query.slice(0, query.lastIndexOf("&Signature="));
    const sts = stringToSign(path, signedQuery, "Prefix" in v.params_decoded).toString("ascii");
    equal("string_to_sign", sts, v.string_to_sign);
    equal("token_id", tokenId(target), v.token_id);
    equal("path_form_target", pathForm(target), v.path_form_target);
    equal("path_form_request_target", pathForm(v.request_target), v.path_form_request_target);
  });
}
for (const v of load("unsignable.json")) {
  check("unsignable.json", v.name, () =>
    refused(() => signPath(v.path_decoded, keyring.get(v.key_id), {
      ...options(v.params_decoded),
      query: v.app_query_wire,
      maxLifetime: v.max_lifetime,
    }), SigningError));
}
for (const v of load("content-disposition.json")) {
  check("content-disposition.json", v.filename, () => {
    const run = () => contentDisposition(v.filename, { inline: v.inline });
    if (v.value === null) refused(run, SigningError);
    else equal("value", run(), v.value);
  });
}
for (const v of load("keyrings.json")) {
  check("keyrings.json", v.name, () => {
    const run = () => parseKeyring(JSON.stringify(v.document));
    if (!v.valid) return refused(run, KeyringError);
    const parsed = run();
    equal("keys", JSON.stringify(parsed.keys.map((k) => k.id)), JSON.stringify(v.keys));
    equal("active", parsed.active?.id ?? null, v.active);
  });
}
for (const v of load("window.json")) {
  check("window.json", v.name, () => {
    const run = () => signingTimes(v.now, {
      expiresIn: v.expires_in, expiresAt: v.expires_at, window: v.window, maxLifetime: v.max_lifetime,
    });
    if (v.refused) return refused(run, SigningError);
    equal("issued, expires", JSON.stringify(run()), JSON.stringify([v.issued, v.expires]));
  });
}

let failed = 0;
for (const [file, checks] of Object.entries(results)) {
  for (const [name, outcome] of Object.entries(checks)) {
    if (outcome !== null) failed++;
    if (!json) console.log(`${outcome === null ? "ok  " : "FAIL"} ${file} ${name}${outcome ? `: ${outcome}` : ""}`);
  }
}
if (json) console.log(JSON.stringify(results));
else console.log(`${failed ? "FAILED" : "passed"}: ${failed} of ${Object.values(results).reduce((n, c) => n + Object.keys(c).length, 0)} checks failed`);
process.exitCode = failed ? 1 : 0;
