// Validates rendered Kubernetes manifests against the API schemas shipped in
// the kubernetes-models package.
//
//   node tests/helm/validate.mjs LABEL < rendered.yaml
//
// Every document must be a kind kubernetes-models knows, must pass its
// schema (types, required fields, formats) and must not carry fields the API
// does not define: the API server drops unknown fields silently on a
// non-strict apply, so a misspelt "readinesProbe" would otherwise deploy a pod
// without a readiness probe. The schemas themselves allow extra fields, so
// the field check walks the package's TypeScript declarations, which list
// every field of every type.
//
// Prints one line per manifest and a final "LABEL: N manifests valid" or
// "LABEL: N of M manifests invalid"; exits 1 when any manifest is invalid.

import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
const modelsDir = path.dirname(require.resolve("kubernetes-models/package.json"));
const nodeModules = path.dirname(modelsDir);

// ------------------------------------------------------------ declarations

const dtsCache = new Map();

function stripComments(text) {
    return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

function resolveImport(fromFile, spec) {
    if (spec.startsWith(".")) return path.resolve(path.dirname(fromFile), `${spec}.d.ts`);
    if (spec.startsWith("@kubernetes-models/apimachinery/")) {
        return path.join(nodeModules, "@kubernetes-models", "apimachinery", `${spec.slice(32)}.d.ts`);
    }
    return null;
}

// The fields of each interface in one declaration file, its imports, and
// the names it re-exports its interfaces and type aliases under.
function parseDts(file) {
    if (dtsCache.has(file)) return dtsCache.get(file);
    const text = stripComments(readFileSync(file, "utf8"));
    const imports = new Map();
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
        const target = resolveImport(file, m[2]);
        for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
            imports.set(name, target);
        }
    }
    const interfaces = new Map();
    for (const m of text.matchAll(/export\s+interface\s+(\w+)(\s+extends\s+[\w, ]+)?\s*\{/g)) {
        const body = balancedBody(text, m.index + m[0].length - 1);
        const fields = new Map();
        for (const [name, type] of topLevelMembers(body)) fields.set(name, type);
        if (m[2] && /\bTypeMeta\b/.test(m[2])) {
            fields.set("apiVersion", "string");
            fields.set("kind", "string");
        }
        interfaces.set(m[1], fields);
    }
    const aliases = new Map();
    for (const m of text.matchAll(/export\s*\{([^}]*)\}\s*;/g)) {
        for (const part of m[1].split(",")) {
            const am = part.trim().match(/^(\w+)\s+as\s+(\w+)$/);
            if (am) aliases.set(am[2], am[1]);
        }
    }
    const parsed = { file, imports, interfaces, aliases };
    dtsCache.set(file, parsed);
    return parsed;
}

// The text between the brace at `open` and its partner.
function balancedBody(text, open) {
    let depth = 0;
    for (let i = open; i < text.length; i++) {
        if (text[i] === "{") depth++;
        else if (text[i] === "}" && --depth === 0) return text.slice(open + 1, i);
    }
    throw new Error("unbalanced declaration");
}

// `"name"?: Type;` members at brace depth 0 of an interface body.
function* topLevelMembers(body) {
    let depth = 0;
    let start = 0;
    for (let i = 0; i < body.length; i++) {
        const c = body[i];
        if (c === "{" || c === "<" || c === "(") depth++;
        else if (c === "}" || c === ">" || c === ")") depth--;
        else if (c === ";" && depth === 0) {
            const member = body.slice(start, i).trim();
            start = i + 1;
            const m = member.match(/^"?([\w$-]+)"?\??\s*:\s*([\s\S]+)$/);
            if (m) yield [m[1], m[2].trim()];
        }
    }
}

// A type as the walker needs it: {fields, ctx} for an object, {items} for an
// array, {values} for a string-keyed map, or null for anything it does not
// descend into (scalars, unions, opaque JSON).
function resolveType(ctx, type) {
    type = type.trim();
    let m = type.match(/^Array<([\s\S]+)>$/);
    if (m) return { items: m[1] };
    m = type.match(/^\{\s*\[key:\s*string\]:\s*([\s\S]+?);?\s*\}$/);
    if (m) return { values: m[1] };
    if (!/^\w+$/.test(type)) return null;
    if (ctx.interfaces.has(type)) return { fields: ctx.interfaces.get(type), ctx };
    const target = ctx.imports.get(type);
    if (!target || !existsSync(target)) return null;
    const other = parseDts(target);
    const local = other.aliases.get(type) ?? type;
    if (!other.interfaces.has(local)) return null;
    return { fields: other.interfaces.get(local), ctx: other };
}

function checkFields(ctx, type, value, where, errors) {
    if (value === null || value === undefined) return;
    const t = resolveType(ctx, type);
    if (!t) return;
    if (t.items !== undefined) {
        if (Array.isArray(value)) value.forEach((v, i) => checkFields(ctx, t.items, v, `${where}/${i}`, errors));
        return;
    }
    if (typeof value !== "object" || Array.isArray(value)) return;
    if (t.values !== undefined) {
        for (const [k, v] of Object.entries(value)) checkFields(ctx, t.values, v, `${where}/${k}`, errors);
        return;
    }
    for (const [k, v] of Object.entries(value)) {
        const fieldType = t.fields.get(k);
        if (fieldType === undefined) errors.push(`${where || "/"}: unknown field "${k}"`);
        else checkFields(t.ctx, fieldType, v, `${where}/${k}`, errors);
    }
}

// ------------------------------------------------------------------ models

// apiVersion "apps/v1" lives in kubernetes-models/apps/v1, the core group's
// "v1" in kubernetes-models/v1; each kind is a class of that module.
async function loadModel(apiVersion, kind) {
    if (typeof apiVersion !== "string" || !/^[\w.-]+(\/[\w.-]+)?$/.test(apiVersion)) return null;
    if (typeof kind !== "string" || !/^\w+$/.test(kind)) return null;
    const dts = path.join(modelsDir, apiVersion, `${kind}.d.ts`);
    if (!existsSync(dts)) return null;
    const mod = await import(`kubernetes-models/${apiVersion}`);
    const Model = mod[kind];
    if (typeof Model !== "function" || Model.kind !== kind || Model.apiVersion !== apiVersion) return null;
    return { Model, dts };
}

function schemaErrors(err) {
    if (Array.isArray(err?.errors) && err.errors.length > 0) {
        return err.errors.map((e) => `${e.instancePath || "/"}: ${e.message}`);
    }
    return [String(err?.message ?? err)];
}

async function validateDocument(obj) {
    const { apiVersion, kind } = obj;
    const found = await loadModel(apiVersion, kind);
    if (!found) return [`unknown kind ${apiVersion}/${kind}`];
    const errors = [];
    try {
        new found.Model(obj).validate();
    } catch (err) {
        errors.push(...schemaErrors(err));
    }
    checkFields(parseDts(found.dts), `I${kind}`, obj, "", errors);
    return errors;
}

// -------------------------------------------------------------------- main

async function main() {
    const label = process.argv[2] ?? "manifests";
    const text = readFileSync(0, "utf8");
    // Kubernetes reads manifests as YAML 1.1 (sigs.k8s.io/yaml over
    // go-yaml v2): an unquoted `on` is a boolean there, so read it the same.
    const docs = parseAllDocuments(text, { version: "1.1", uniqueKeys: true });
    let total = 0;
    let bad = 0;
    for (const doc of docs) {
        if (doc.errors.length > 0) {
            total++;
            bad++;
            console.log(`FAIL ${label}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
            continue;
        }
        const obj = doc.toJS({ maxAliasCount: 100 });
        if (obj === null || obj === undefined) continue;
        total++;
        const name = `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
        const errors = typeof obj === "object" && !Array.isArray(obj) ? await validateDocument(obj) : ["not a mapping"];
        if (errors.length === 0) {
            console.log(`ok   ${label}: ${obj.apiVersion} ${name}`);
        } else {
            bad++;
            console.log(`FAIL ${label}: ${obj.apiVersion} ${name}`);
            for (const e of errors) console.log(`       ${e}`);
        }
    }
    if (total === 0) {
        console.log(`${label}: no manifests`);
        process.exit(1);
    }
    console.log(bad === 0 ? `${label}: ${total} manifests valid` : `${label}: ${bad} of ${total} manifests invalid`);
    process.exit(bad === 0 ? 0 : 1);
}

await main();
