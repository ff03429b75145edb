/* Web form of the ground deformation service: plain JavaScript, no build step, no CDN.
 *
 * GDM.indexPage(): process picker, a form generated from the process's JSON schema,
 *   uploads (POST /ogcapi/uploads), async submission (POST /ogcapi/processes/{id}/execution
 *   with Prefer: respond-async) and a job list polling GET /ogcapi/jobs.
 * GDM.jobPage(): one job: status, downloads, quicklooks, click-a-pixel time-series plot.
 * Every call is same-origin and carries the token (kept in the gdm_token cookie once
 * signed in) in the Authorization header: the server takes no change on the strength of
 * a cookie alone. Without accounts, calls carry the page's CSRF token (X-GDM-CSRF).
 * File downloads go through one-time links (POST /ogcapi/jobs/{id}/download-links).
 */
"use strict";

const GDM = (() => {
  const ROOT = document.body.dataset.root || "";
  const FINAL = ["successful", "failed", "dismissed"];
  const SVGNS = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------ utilities
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== undefined && c !== null) node.append(c);
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function storedToken() {
    const m = document.cookie.match(/(?:^|;\s*)gdm_token=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function authHeaders() {
    const h = {};
    const tok = storedToken();
    if (tok) h.Authorization = `Bearer ${tok}`;
    const csrf = document.querySelector('meta[name="gdm-csrf"]');
    if (csrf) h["X-GDM-CSRF"] = csrf.content;
    return h;
  }

  async function api(method, url, body, headers) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json", ...authHeaders(), ...(headers || {}) } };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
    const resp = await fetch(ROOT + url, opts);
    let data = null;
    const type = resp.headers.get("Content-Type") || "";
    if (type.includes("json")) data = await resp.json().catch(() => null);
    else data = await resp.text().catch(() => null);
    return { ok: resp.ok, status: resp.status, data, headers: resp.headers };
  }

  // A link to a job's file: on click, ask for a one-time download link and follow it.
  function fileLink(jobId, f) {
    return el("a", {
      href: f.href, download: "", text: f.name,
      onclick: async (ev) => {
        ev.preventDefault();
        const r = await api("POST", `/ogcapi/jobs/${encodeURIComponent(jobId)}/download-links`, { path: f.path });
        if (!r.ok) { alert(errorText(r)); return; }
        const a = el("a", { href: r.data.href, download: "" });
        document.body.append(a);
        a.click();
        a.remove();
      },
    });
  }

  function errorText(r) {
    const d = r.data;
    if (d && typeof d === "object") {
      return d.detail || d.error || d.message || d.title || JSON.stringify(d);
    }
    if (typeof d === "string" && d.trim()) {
      const m = d.match(/<p>([\s\S]*?)<\/p>/);
      return (m ? m[1] : d).replace(/<[^>]+>/g, "").trim().slice(0, 300);
    }
    return `HTTP ${r.status}`;
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const t = new Date(iso);
    return isNaN(t) ? iso : t.toLocaleString();
  }

  function badge(status) {
    return el("span", { class: `badge ${status}`, text: status });
  }

  function progressBar(pct) {
    const p = Math.max(0, Math.min(100, Number(pct) || 0));
    return el("div", { class: "bar", title: `${p}%` }, el("div", { style: `width: ${p}%` }));
  }

  // ----------------------------------------------------------------------- login
  function setupAccount() {
    const login = document.getElementById("login");
    if (login) {
      login.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const tok = document.getElementById("token").value.trim();
        if (!tok) return;
        const secure = location.protocol === "https:" ? "; Secure" : "";
        document.cookie = `gdm_token=${encodeURIComponent(tok)}; path=/; SameSite=Strict${secure}`;
        location.reload();
      });
    }
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", () => {
        document.cookie = "gdm_token=; path=/; SameSite=Strict; Max-Age=0";
        location.reload();
      });
    }
  }

  // ------------------------------------------------------- schema -> form widgets
  function unwrapNullable(schema) {
    if (Array.isArray(schema.anyOf)) {
      const rest = schema.anyOf.filter((s) => s.type !== "null");
      if (rest.length === 1) {
        const merged = { ...schema, ...rest[0] };
        delete merged.anyOf;
        return [merged, rest.length < schema.anyOf.length];
      }
    }
    if (Array.isArray(schema.type) && schema.type.includes("null")) {
      const types = schema.type.filter((t) => t !== "null");
      return [{ ...schema, type: types.length === 1 ? types[0] : types }, true];
    }
    return [schema, false];
  }

  function isFileList(name, schema) {
    if (schema.type !== "array" || !schema.items || schema.items.type !== "string") return false;
    const text = `${name} ${schema.title || ""} ${schema.description || ""}`;
    return /upload|url|file|image|scene|slc/i.test(text);
  }

  let uid = 0;
  function fieldId(name) { uid += 1; return `f-${name.replace(/[^\w-]/g, "_")}-${uid}`; }

  // A widget: { node, get: async () => value | undefined (omitted), error: string setter }
  function makeWidget(name, rawSchema, required) {
    const [schema, nullable] = unwrapNullable(rawSchema);
    const optional = !required || nullable;
    const id = fieldId(name);
    const hasDefault = schema.default !== undefined && schema.default !== null;
    const defText = hasDefault ? `default: ${JSON.stringify(schema.default)}` : "preset / automatic";

    if (isFileList(name, schema)) return fileListWidget(name, schema, id, required);
    if (schema["x-scene-search"]) return sceneSearchWidget(name, schema, id, schema["x-scene-search"]);

    if (Array.isArray(schema.enum)) {
      const select = el("select", { id, name });
      if (optional && !hasDefault) select.append(el("option", { value: "", text: `(${defText})` }));
      for (const v of schema.enum) {
        select.append(el("option", { value: JSON.stringify(v), text: String(v), selected: hasDefault && v === schema.default }));
      }
      return { node: select, id, get: async () => (select.value === "" ? undefined : JSON.parse(select.value)) };
    }

    if (schema.type === "boolean") {
      if (nullable) {
        const select = el("select", { id, name },
          el("option", { value: "", text: `(${defText})` }),
          el("option", { value: "true", text: "yes" }), el("option", { value: "false", text: "no" }));
        return { node: select, id, get: async () => (select.value === "" ? undefined : select.value === "true") };
      }
      const box = el("input", { id, name, type: "checkbox", checked: schema.default === true });
      return { node: box, id, get: async () => box.checked };
    }

    if (schema.type === "integer" || schema.type === "number") {
      const lo = schema.minimum ?? schema.exclusiveMinimum;
      const hi = schema.maximum ?? schema.exclusiveMaximum;
      const input = el("input", {
        id, name, type: "number", min: lo, max: hi,
        step: schema.type === "integer" ? (schema.multipleOf || 1) : "any",
        placeholder: optional ? defText : "",
        value: hasDefault ? String(schema.default) : undefined,
      });
      const get = async () => {
        const text = input.value.trim();
        if (text === "") {
          if (!optional) throw new Error("a value is required");
          return undefined;
        }
        const v = Number(text);
        if (!Number.isFinite(v)) throw new Error("not a number");
        if (schema.type === "integer" && !Number.isInteger(v)) throw new Error("must be a whole number");
        if (schema.minimum !== undefined && v < schema.minimum) throw new Error(`must be at least ${schema.minimum}`);
        if (schema.maximum !== undefined && v > schema.maximum) throw new Error(`must be at most ${schema.maximum}`);
        if (schema.exclusiveMinimum !== undefined && v <= schema.exclusiveMinimum) throw new Error(`must be above ${schema.exclusiveMinimum}`);
        if (schema.exclusiveMaximum !== undefined && v >= schema.exclusiveMaximum) throw new Error(`must be below ${schema.exclusiveMaximum}`);
        return v;
      };
      return { node: input, id, get };
    }

    if (schema.type === "string") {
      const long = (schema.maxLength || 0) > 1000;
      const input = long
        ? el("textarea", { id, name, rows: 3, maxlength: schema.maxLength })
        : el("input", { id, name, type: "text", maxlength: schema.maxLength, pattern: schema.pattern,
                        placeholder: optional && !hasDefault ? defText : "" });
      if (hasDefault) input.value = schema.default;
      const get = async () => {
        const v = input.value;
        if (v === "" && optional) return undefined;
        if (schema.minLength && v.length < schema.minLength) throw new Error(`at least ${schema.minLength} characters`);
        return v;
      };
      return { node: input, id, get };
    }

    if (schema.type === "object" && schema.properties) {
      const box = el("fieldset", { id, class: "nested" }, el("legend", { text: schema.title || name }));
      const req = new Set(schema.required || []);
      const children = [];
      for (const [sub, subSchema] of Object.entries(schema.properties)) {
        const f = makeField(sub, subSchema, req.has(sub));
        children.push([sub, f]);
        box.append(f.node);
      }
      const get = async () => {
        const out = {};
        for (const [sub, f] of children) {
          const v = await f.get();
          if (v !== undefined) out[sub] = v;
        }
        return Object.keys(out).length || !optional ? out : undefined;
      };
      return { node: box, id, get, nested: true };
    }

    if (schema.type === "array" && schema.items && ["number", "integer", "string"].includes(schema.items.type)) {
      const input = el("input", { id, name, type: "text", placeholder: "comma-separated values" });
      if (Array.isArray(schema.default)) input.value = schema.default.join(", ");
      const get = async () => {
        const text = input.value.trim();
        if (text === "") {
          if (!optional) throw new Error("a value is required");
          return undefined;
        }
        const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
        if (schema.items.type === "string") return parts;
        const nums = parts.map(Number);
        if (nums.some((n) => !Number.isFinite(n))) throw new Error("numbers separated by commas");
        return nums;
      };
      return { node: input, id, get };
    }

    // Anything else: JSON text.
    const area = el("textarea", { id, name, rows: 2, placeholder: "JSON" });
    if (schema.default !== undefined) area.value = JSON.stringify(schema.default);
    const get = async () => {
      const text = area.value.trim();
      if (text === "") {
        if (!optional) throw new Error("a value is required");
        return undefined;
      }
      try { return JSON.parse(text); } catch (e) { throw new Error("not valid JSON"); }
    };
    return { node: area, id, get };
  }

  function fileListWidget(name, schema, id, required) {
    const files = el("input", { id, name: `${name}-files`, type: "file", multiple: true, class: "files" });
    const urls = el("textarea", {
      id: `${id}-refs`, name: `${name}-refs`, rows: 3,
      placeholder: "or http(s) URLs / names of files uploaded earlier, one per line",
    });
    const list = el("ul", { class: "file-list" });
    files.addEventListener("change", () => {
      list.replaceChildren(...[...files.files].map((f) => el("li", { text: `${f.name} (${(f.size / 1024).toFixed(0)} KiB)` })));
    });
    const node = el("div", { class: "file-widget" }, files, list, urls);
    const get = async () => {
      const refs = [];
      const chosen = [...files.files];
      for (let k = 0; k < chosen.length; k += 1) {
        const f = chosen[k];
        setStatus(`uploading ${f.name} (${k + 1}/${chosen.length})...`);
        const form = new FormData();
        form.append("file", f, f.name);
        const r = await api("POST", "/ogcapi/uploads", form);
        if (!r.ok) throw new Error(`upload of ${f.name} failed: ${errorText(r)}`);
        const d = r.data || {};
        const ref = typeof d === "string" ? d.trim() : (d.reference || d.name || d.id || d.filename);
        if (!ref) throw new Error(`upload of ${f.name}: the server gave no name back`);
        refs.push(ref);
      }
      for (const line of urls.value.split(/\r?\n/)) {
        if (line.trim()) refs.push(line.trim());
      }
      if (refs.length === 0 && !required) return undefined;
      if (schema.minItems && refs.length < schema.minItems) throw new Error(`at least ${schema.minItems} needed, ${refs.length} given`);
      if (schema.maxItems && refs.length > schema.maxItems) throw new Error(`at most ${schema.maxItems} allowed`);
      return refs;
    };
    // Count without uploading (checked before anything is sent).
    const count = () => files.files.length + urls.value.split(/\r?\n/).filter((l) => l.trim()).length;
    const precheck = () => {
      const n = count();
      if (n === 0 && !required) return null;  // optional: e.g. scenes by area instead
      if (schema.minItems && n < schema.minItems) return `at least ${schema.minItems} needed, ${n} given`;
      if (schema.maxItems && n > schema.maxItems) return `at most ${schema.maxItems} allowed`;
      return null;
    };
    return { node, id, get, precheck };
  }

  // Scenes by area and dates, with a preview of what the archive holds.
  function sceneSearchWidget(name, schema, id, provider) {
    const aoi = el("input", { id, name: `${name}-aoi`, type: "text", class: "scene-aoi",
      placeholder: "west,south,east,north (WGS84) or WKT" });
    const start = el("input", { name: `${name}-start`, type: "date", class: "scene-start" });
    const end = el("input", { name: `${name}-end`, type: "date", class: "scene-end" });
    const extra = [];
    const extraGet = [];
    if (provider === "s2") {
      const cloud = el("input", { name: `${name}-max_cloud`, type: "number", min: 0, max: 100, step: "any",
        class: "scene-cloud", placeholder: "max cloud %" });
      extra.push(el("label", {}, "Max cloud cover (%) ", cloud));
      extraGet.push(() => (cloud.value.trim() === "" ? {} : { max_cloud: Number(cloud.value) }));
    } else if (provider === "s1") {
      const dir = el("select", { name: `${name}-flight_direction`, class: "scene-direction" },
        el("option", { value: "", text: "(any direction)" }),
        el("option", { value: "ASCENDING", text: "ascending" }),
        el("option", { value: "DESCENDING", text: "descending" }));
      const track = el("input", { name: `${name}-relative_orbit`, type: "number", min: 1, max: 175,
        class: "scene-track", placeholder: "track" });
      extra.push(el("label", {}, "Direction ", dir), el("label", {}, "Relative orbit ", track));
      extraGet.push(() => (dir.value ? { flight_direction: dir.value } : {}));
      extraGet.push(() => (track.value.trim() === "" ? {} : { relative_orbit: Number(track.value) }));
    }
    const button = el("button", { type: "button", class: "scene-preview", text: "Find scenes" });
    const status = el("span", { class: "muted scene-status", role: "status" });
    let footprintsOf = () => {};
    const table = el("table", { class: "scenes", hidden: true });
    const value = () => {
      if (aoi.value.trim() === "") return undefined;
      if (!start.value || !end.value) throw new Error("give the first and last dates");
      const out = { provider, aoi: aoi.value.trim(), start: start.value, end: end.value };
      for (const g of extraGet) Object.assign(out, g());
      return out;
    };
    button.addEventListener("click", async () => {
      let body;
      try {
        body = value();
        if (body === undefined) throw new Error("give an area of interest");
      } catch (e) {
        status.textContent = e.message; status.className = "error scene-status"; return;
      }
      status.textContent = "searching..."; status.className = "muted scene-status";
      const r = await api("POST", "/ogcapi/scenes/search", body);
      if (!r.ok) { status.textContent = errorText(r); status.className = "error scene-status"; table.hidden = true; return; }
      const d = r.data;
      status.textContent = `${d.numberMatched} scene(s)`;
      status.className = "muted scene-status";
      const rows = d.scenes.map((sc) => {
        const p = sc.properties || {};
        const cloud = p["eo:cloud_cover"] ?? p.cloud_cover;
        const track = p["sat:relative_orbit"] ?? p.relative_orbit;
        const info = cloud !== undefined ? `${Number(cloud).toFixed(0)} % cloud`
          : track !== undefined ? `track ${track} ${p["sat:orbit_state"] || p.flight_direction || ""}` : "";
        return el("tr", {}, el("td", { text: sc.datetime.slice(0, 10) }), el("td", { text: sc.id }), el("td", { text: info }));
      });
      table.replaceChildren(el("thead", {}, el("tr", {}, el("th", { text: "Date" }), el("th", { text: "Scene" }), el("th", { text: "" }))),
        el("tbody", {}, ...rows));
      table.hidden = rows.length === 0;
      footprintsOf(d.scenes);
    });
    const mapNode = el("div", { class: "map scene-map", id: `${id}-map` });
    const node = el("div", { class: "scene-widget" },
      el("label", {}, "Area ", aoi),
      el("small", { class: "help", text: "Draw a rectangle or polygon on the map (tools on its left), edit it, or type the area." }),
      mapNode, el("label", {}, "From ", start), el("label", {}, "to ", end), ...extra,
      el("div", {}, button, " ", status), table);
    let drawn = null;
    const mount = () => {
      if (!mapNode.isConnected) { requestAnimationFrame(mount); return; }
      drawn = aoiMap(mapNode, aoi);
      mapNode.aoi = drawn;
    };
    requestAnimationFrame(mount);
    aoi.addEventListener("input", () => { if (drawn) drawn.refresh(); });
    footprintsOf = (scenes) => { if (drawn) drawn.showFootprints(scenes); };
    return { node, id, get: async () => value() };
  }

  function makeField(name, schema, required) {
    const w = makeWidget(name, schema, required);
    const err = el("div", { class: "field-error", role: "alert" });
    const label = el("label", { for: w.id }, schema.title || name, required ? el("span", { class: "req", text: " *" }) : null);
    const help = schema.description ? el("small", { class: "help", text: schema.description }) : null;
    const node = w.nested ? el("div", { class: "field" }, w.node, help, err)
      : el("div", { class: "field", "data-input": name }, label, w.node, help, err);
    const get = async () => {
      err.textContent = "";
      try {
        return await w.get();
      } catch (e) {
        err.textContent = e.message;
        throw new Error(`${schema.title || name}: ${e.message}`);
      }
    };
    const precheck = () => {
      const msg = w.precheck ? w.precheck() : null;
      err.textContent = msg || "";
      return msg ? `${schema.title || name}: ${msg}` : null;
    };
    return { node, get, precheck };
  }

  let statusNode = null;
  function setStatus(text, isError) {
    if (!statusNode) return;
    statusNode.textContent = text;
    statusNode.className = isError ? "error" : "muted";
  }

  // ------------------------------------------------------------------ index page
  function indexPage() {
    setupAccount();
    statusNode = document.getElementById("submit-status");
    const processes = JSON.parse(document.getElementById("processes-data").textContent);
    const picker = document.getElementById("process");
    const fieldsBox = document.getElementById("fields");
    const desc = document.getElementById("process-description");
    const form = document.getElementById("job-form");
    const button = document.getElementById("submit");
    let fields = [];

    function build() {
      const proc = processes.find((p) => p.id === picker.value) || processes[0];
      desc.textContent = proc.description;
      fields = [];
      const main = [];
      const advanced = [];
      for (const { name, schema } of proc.inputs) {
        const f = makeField(name, schema, !!schema["x-required"]);
        fields.push([name, f]);
        // Required inputs, and the scene inputs (files or area + dates), come first.
        const [plain] = unwrapNullable(schema);
        // Presets are a first-level choice: they set most of the optional parameters.
        const primary = schema["x-required"] || plain["x-scene-search"] || isFileList(name, plain)
          || name === "preset";
        (primary ? main : advanced).push(f.node);
      }
      fieldsBox.replaceChildren(...main);
      if (advanced.length) {
        fieldsBox.append(el("details", { class: "advanced" }, el("summary", { text: "Optional parameters" }), ...advanced));
      }
      const h = `#${proc.id}`;
      if (location.hash !== h) history.replaceState(null, "", h);
    }

    const fromHash = decodeURIComponent(location.hash.slice(1));
    if (processes.some((p) => p.id === fromHash)) picker.value = fromHash;
    picker.addEventListener("change", build);
    build();

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const problems = fields.map(([, f]) => f.precheck()).filter((m) => m);
      if (problems.length) { setStatus(problems.join("; "), true); return; }
      button.disabled = true;
      try {
        const inputs = {};
        for (const [name, f] of fields) {
          const v = await f.get();
          if (v !== undefined) inputs[name] = v;
        }
        setStatus("submitting...");
        const r = await api("POST", `/ogcapi/processes/${encodeURIComponent(picker.value)}/execution`,
          { inputs }, { Prefer: "respond-async" });
        if (!r.ok) throw new Error(errorText(r));
        const d = r.data || {};
        const loc = r.headers.get("Location") || "";
        const jobId = d.jobID || d.id || loc.split("/").filter((s) => s).pop();
        statusNode.replaceChildren("submitted: ", el("a", { href: `${ROOT}/jobs/${jobId}`, text: `job ${jobId}`, class: "job-link" }));
        statusNode.className = "ok";
        form.querySelectorAll("input[type=file]").forEach((i) => { i.value = ""; });
        form.querySelectorAll(".file-list").forEach((l) => l.replaceChildren());
        jobs.refresh();
      } catch (e) {
        setStatus(e.message, true);
      } finally {
        button.disabled = false;
      }
    });

    const jobs = jobList();
    jobs.refresh();
  }

  function jobList() {
    const tbody = document.querySelector("#jobs tbody");
    const empty = document.getElementById("no-jobs");
    const errBox = document.getElementById("jobs-error");
    const stamp = document.getElementById("jobs-updated");
    const rows = new Map();
    const details = new Map(); // job id -> promise of /api/jobs/{id} for finished jobs
    let timer = null;

    function resultsCell(id) {
      const cell = el("td", { class: "results" });
      if (!details.has(id)) details.set(id, api("GET", `/api/jobs/${id}`));
      details.get(id).then((r) => {
        if (!r.ok) return;
        const s = r.data;
        const look = s.quicklooks[0];
        if (look) {
          cell.append(el("a", { href: s.page, title: "open the job" },
            el("img", { class: "thumb", src: look.href, alt: `${look.name} quicklook`, loading: "lazy" })));
        }
        const links = el("span", { class: "links" });
        for (const f of s.files.slice(0, 4)) links.append(fileLink(id, f), " ");
        if (s.files.length > 4) links.append(el("a", { href: s.page, text: `+${s.files.length - 4} more` }));
        for (const [k, v] of Object.entries(s.literals)) links.append(el("span", { class: "literal", text: `${k}: ${String(v).slice(0, 60)}` }));
        cell.append(links);
      });
      return cell;
    }

    function render(job) {
      const id = job.jobID || job.id;
      const status = job.status;
      let row = rows.get(id);
      const sig = `${status}|${job.progress}|${job.message}`;
      if (row && row.dataset.sig === sig) return row;
      const dismiss = FINAL.includes(status) ? null : el("button", {
        type: "button", class: "small", text: "Dismiss",
        onclick: async () => {
          const r = await api("DELETE", `/ogcapi/jobs/${id}`);
          if (!r.ok) alert(errorText(r));
          refresh();
        },
      });
      const cells = [
        el("td", {}, el("a", { href: `${ROOT}/jobs/${id}`, text: job.processID || job.process || "?" })),
        el("td", { text: fmtTime(job.created), title: id }),
        el("td", {}, badge(status)),
        el("td", {}, progressBar(job.progress), el("small", { class: "muted msg", text: job.message || "" })),
        status === "successful" ? resultsCell(id) : el("td", { class: "results" }),
        el("td", {}, dismiss),
      ];
      if (!row) {
        row = el("tr", { "data-job": id });
        rows.set(id, row);
      }
      row.dataset.sig = sig;
      row.dataset.status = status;
      row.replaceChildren(...cells);
      return row;
    }

    const healthBox = document.getElementById("queue-health");
    async function checkHealth() {
      if (!healthBox) return;
      const h = await api("GET", "/ogcapi/health").catch(() => null);
      const problems = h && h.ok && h.data ? (h.data.problems || []) : [];
      healthBox.textContent = problems.join("; ");
      healthBox.hidden = problems.length === 0;
    }

    async function refresh() {
      clearTimeout(timer);
      let delay = 2000;
      checkHealth();
      try {
        const r = await api("GET", "/ogcapi/jobs?limit=50");
        if (!r.ok) throw new Error(errorText(r));
        const list = Array.isArray(r.data) ? r.data : (r.data.jobs || []);
        const order = list.map(render);
        const keep = new Set(order);
        for (const [id, row] of rows) if (!keep.has(row)) { rows.delete(id); row.remove(); }
        order.forEach((row, k) => { if (tbody.children[k] !== row) tbody.insertBefore(row, tbody.children[k] || null); });
        empty.hidden = list.length > 0;
        errBox.hidden = true;
        stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
        if (!list.some((j) => !FINAL.includes(j.status))) delay = 10000;
      } catch (e) {
        errBox.textContent = `job list: ${e.message}`;
        errBox.hidden = false;
        delay = 5000;
      }
      timer = setTimeout(refresh, document.hidden ? Math.max(delay, 10000) : delay);
    }
    return { refresh };
  }

  // -------------------------------------------------------------------- job page
  function jobPage() {
    setupAccount();
    let job = JSON.parse(document.getElementById("job-data").textContent);
    let shownFiles = "";
    let mapReady = false;

    function draw() {
      const st = document.getElementById("job-status");
      st.textContent = job.status;
      st.className = `badge ${job.status}`;
      document.getElementById("job-bar").style.width = `${job.progress}%`;
      document.getElementById("job-progress").textContent = `${job.progress}%`;
      document.getElementById("job-message").textContent = job.message;
      document.getElementById("job-inputs").textContent = JSON.stringify(job.inputs, null, 2);
      const dis = document.getElementById("dismiss");
      dis.hidden = FINAL.includes(job.status);
      const sig = JSON.stringify([job.files, job.quicklooks, job.literals]);
      if (sig !== shownFiles) {
        shownFiles = sig;
        document.getElementById("downloads").replaceChildren(
          ...job.files.map((f) => el("li", {}, fileLink(job.id, f),
            el("span", { class: "muted", text: ` ${f.title} — ${f.path}` }))));
        document.getElementById("job-literals").replaceChildren(
          ...Object.entries(job.literals).map(([k, v]) => el("p", {}, el("b", { text: `${k}: ` }), String(v))));
        document.getElementById("quicklooks").replaceChildren(
          ...job.quicklooks.map((q) => el("figure", {},
            el("a", { href: q.href, target: "_blank" }, el("img", { class: "quicklook", src: q.href, alt: `${q.name} quicklook`, "data-name": q.name })),
            el("figcaption", { text: q.name }))));
      }
      if (FINAL.includes(job.status) && !mapReady) {
        mapReady = true;
        jobMap(job);
      }
    }

    document.getElementById("dismiss").addEventListener("click", async () => {
      const r = await api("DELETE", `/ogcapi/jobs/${job.id}`);
      if (!r.ok) alert(errorText(r));
      poll();
    });

    async function poll() {
      const r = await api("GET", `/api/jobs/${job.id}`);
      if (r.ok) { job = r.data; draw(); }
      if (!FINAL.includes(job.status)) setTimeout(poll, 2000);
    }
    draw();
    if (!FINAL.includes(job.status)) setTimeout(poll, 2000);
  }

  // ------------------------------------------------------------------------ maps
  // Leaflet (vendored under /assets/vendor/, no CDN). The base layer is the XYZ URL of the
  // server's settings (GDM_BASEMAP_URL, OpenStreetMap by default).
  const maps = {};

  function baseMap(node) {
    const map = L.map(node, { worldCopyJump: true, preferCanvas: false });
    const url = document.body.dataset.basemap;
    if (url) {
      const base = L.tileLayer(url, { maxZoom: 19, className: "basemap",
        attribution: document.body.dataset.basemapAttribution || "" });
      base.on("load", () => { node.dataset.basemap = "loaded"; });
      base.addTo(map);
    }
    L.control.scale({ imperial: false }).addTo(map);
    map.setView([30, 10], 2);
    maps[node.id] = map;
    return map;
  }

  function fmt(v, span) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "–";
    const digits = Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(Math.abs(span) || 1))));
    return v.toFixed(digits);
  }

  // AOI text <-> shape: "west,south,east,north", WKT POLYGON/POINT, or GeoJSON.
  function parseAoi(text) {
    const t = (text || "").trim();
    if (!t) return null;
    const nums = t.split(/[\s,]+/).map(Number);
    if (nums.length === 4 && nums.every(Number.isFinite)) {
      const [w, s, e, n] = nums;
      if (w < e && s < n) return L.rectangle([[s, w], [n, e]]);
      return null;
    }
    const poly = t.match(/^POLYGON\s*\(\((.*)\)\)$/i);
    if (poly) {
      const ring = poly[1].split(",").map((p) => p.trim().split(/\s+/).map(Number));
      if (ring.every((c) => c.length === 2 && c.every(Number.isFinite))) return L.polygon(ring.map(([x, y]) => [y, x]));
      return null;
    }
    const pt = t.match(/^POINT\s*\(\s*([-\d.eE+]+)\s+([-\d.eE+]+)\s*\)$/i);
    if (pt) return L.circleMarker([Number(pt[2]), Number(pt[1])], { radius: 6 });
    try { return L.geoJSON(JSON.parse(t)); } catch (e) { return null; }
  }

  function aoiText(layer) {
    const r = (v) => Number(v.toFixed(5));
    if (layer instanceof L.Rectangle) {
      const b = layer.getBounds();
      return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(r).join(",");
    }
    if (layer instanceof L.Polygon) {
      const ring = layer.getLatLngs()[0].map((ll) => `${r(ll.lng)} ${r(ll.lat)}`);
      ring.push(ring[0]);
      return `POLYGON((${ring.join(", ")}))`;
    }
    return "";
  }

  // A map on which to draw or edit an area of interest kept in sync with a text input.
  function aoiMap(node, input, onChange) {
    const map = baseMap(node);
    map.pm.addControls({ position: "topleft", drawMarker: false, drawCircleMarker: false,
      drawPolyline: false, drawCircle: false, drawText: false, cutPolygon: false,
      rotateMode: false, dragMode: true, drawRectangle: true, drawPolygon: true,
      editMode: true, removalMode: true });
    const aoiStyle = { color: "#1f5fa8", weight: 2, fillOpacity: 0.08, className: "aoi-shape" };
    map.pm.setGlobalOptions({ pathOptions: aoiStyle });
    let shape = null;
    const footprints = L.featureGroup().addTo(map);
    const write = () => {
      input.value = shape ? aoiText(shape) : "";
      if (onChange) onChange(input.value);
    };
    const adopt = (layer, fit) => {
      if (shape && shape !== layer) map.removeLayer(shape);
      shape = layer;
      if (!shape) return;
      if (shape.setStyle) shape.setStyle(aoiStyle);
      if (!map.hasLayer(shape)) shape.addTo(map);
      shape.on("pm:edit pm:dragend", write);
      if (fit && shape.getBounds) map.fitBounds(shape.getBounds().pad(0.6), { maxZoom: 13 });
    };
    map.on("pm:create", (e) => { adopt(e.layer, false); write(); });
    map.on("pm:remove", (e) => { if (e.layer === shape) { shape = null; write(); } });
    const fromText = () => {
      const layer = parseAoi(input.value);
      if (layer instanceof L.GeoJSON) {
        const inner = layer.getLayers()[0];
        adopt(inner || null, true);
      } else adopt(layer, true);
      node.dataset.aoi = shape ? "yes" : "no";
    };
    input.addEventListener("change", fromText);
    fromText();
    return {
      map,
      refresh: fromText,
      showFootprints(scenes) {
        footprints.clearLayers();
        for (const sc of scenes) {
          if (!sc.geometry) continue;
          L.geoJSON(sc.geometry, { style: { color: "#b9770e", weight: 1.5, fillOpacity: 0.04,
            className: "scene-footprint" } })
            .bindTooltip(`${(sc.datetime || "").slice(0, 10)} ${sc.id}`).addTo(footprints);
        }
        node.dataset.footprints = String(footprints.getLayers().length);
        if (footprints.getLayers().length) {
          const b = footprints.getBounds();
          if (shape && shape.getBounds) b.extend(shape.getBounds());
          map.fitBounds(b.pad(0.1));
        }
      },
    };
  }

  function legendControl(map) {
    const ctl = L.control({ position: "bottomright" });
    let box;
    ctl.onAdd = () => {
      box = L.DomUtil.create("div", "map-legend");
      box.id = `${map.getContainer().id}-legend`;
      return box;
    };
    ctl.addTo(map);
    ctl.show = (info, band) => {
      const mid = info.signed ? 0 : (info.vmin + info.vmax) / 2;
      const span = info.vmax - info.vmin;
      const date = info.dates && info.dates.length ? info.dates[band - 1] : null;
      box.replaceChildren(
        el("div", { class: "legend-title", text: info.title + (date ? ` — ${date}` : "") }),
        el("div", { class: "legend-bar", style: `background: linear-gradient(to right, ${info.colors.join(", ")})` }),
        el("div", { class: "legend-ticks" },
          el("span", { class: "legend-min", text: fmt(info.vmin, span) }),
          el("span", { class: "legend-mid", text: fmt(mid, span) }),
          el("span", { class: "legend-max", text: fmt(info.vmax, span) })),
        el("div", { class: "legend-units", text: info.units || "(no unit)" }));
      box.dataset.layer = info.name;
    };
    return ctl;
  }

  function valueControl(map) {
    const ctl = L.control({ position: "topright" });
    let box;
    ctl.onAdd = () => {
      box = L.DomUtil.create("div", "map-value");
      box.id = `${map.getContainer().id}-value`;
      box.textContent = "move over the map for values";
      return box;
    };
    ctl.addTo(map);
    ctl.set = (text, data) => {
      box.textContent = text;
      if (data) box.dataset.value = JSON.stringify(data);
    };
    return ctl;
  }

  // Product layers of a job on a map: overlay tiles, legend, value under the cursor.
  async function productLayers(map, jobId, opts) {
    const r = await api("GET", `/api/jobs/${jobId}/layers`);
    if (!r.ok || !r.data.layers.length) return null;
    const layers = r.data.layers;
    const legend = legendControl(map);
    const readout = valueControl(map);
    const bar = opts.controls;
    const pick = el("select", { id: `${map.getContainer().id}-layer`, "aria-label": "layer shown" },
      ...layers.map((l, k) => el("option", { value: k, text: `${l.title} (${l.units || "-"})` })));
    const bandPick = el("select", { id: `${map.getContainer().id}-band`, "aria-label": "date shown", hidden: true });
    const opacity = el("input", { type: "range", min: 0, max: 100, value: 85, "aria-label": "opacity",
      id: `${map.getContainer().id}-opacity` });
    bar.replaceChildren(el("label", {}, "Layer ", pick), el("label", {}, "Date ", bandPick),
      el("label", {}, "Opacity ", opacity));
    let current = null, overlay = null, band = 1;
    const preferred = layers.findIndex((l) => /^velocity(_geocoded)?$|^east$|^dsm$/.test(l.name));
    const show = (k, fit) => {
      current = layers[k];
      band = current.band;
      bandPick.hidden = !(current.dates && current.dates.length > 1);
      bandPick.replaceChildren(...(current.dates || []).map((d, i) => el("option", { value: i + 1, text: d || `band ${i + 1}`, selected: i + 1 === band })));
      draw();
      const [w, s, e, n] = current.bounds;
      if (fit) map.fitBounds([[s, w], [n, e]], { padding: [10, 10] });
    };
    const draw = () => {
      if (overlay) map.removeLayer(overlay);
      const [w, s, e, n] = current.bounds;
      overlay = L.tileLayer(`${current.tiles}?band=${band}`, {
        className: "product-overlay", opacity: Number(opacity.value) / 100, maxZoom: 22,
        bounds: [[s, w], [n, e]], zIndex: 10,
      });
      const loading = `${current.name}:${band}`;
      map.getContainer().dataset.overlay = "loading";
      overlay.on("load", () => { map.getContainer().dataset.overlay = loading; });
      overlay.addTo(map);
      legend.show(current, band);
      map.getContainer().dataset.layer = current.name;
    };
    pick.addEventListener("change", () => show(Number(pick.value), true));
    bandPick.addEventListener("change", () => { band = Number(bandPick.value); draw(); });
    opacity.addEventListener("input", () => overlay && overlay.setOpacity(Number(opacity.value) / 100));
    pick.value = String(preferred >= 0 ? preferred : 0);
    show(Number(pick.value), true);
    let timer = null, seq = 0;
    map.on("mousemove", (ev) => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const { lat, lng } = ev.latlng.wrap();
        const my = ++seq;
        const v = await api("GET", `${current.value}?lon=${lng.toFixed(6)}&lat=${lat.toFixed(6)}&band=${band}`.slice(ROOT.length));
        if (my !== seq || !v.ok) return;
        const where = `${lat.toFixed(5)}°, ${lng.toFixed(5)}°`;
        readout.set(v.data.value === null ? `no data at ${where}` : `${fmt(v.data.value, current.vmax - current.vmin)} ${current.units} at ${where}`, v.data);
      }, 120);
    });
    return { layers, get current() { return current; } };
  }

  function jobMap(job) {
    const section = document.getElementById("map-section");
    const node = document.getElementById("job-map");
    section.hidden = false;  // before the map is made: Leaflet needs the container's size
    const map = baseMap(node);
    const aoi = job.inputs && job.inputs.scenes && job.inputs.scenes.aoi;
    const shape = aoi ? parseAoi(aoi) : null;
    if (shape) {
      (shape.setStyle ? shape.setStyle({ color: "#1f5fa8", weight: 2, fill: false, className: "aoi-shape" }) : shape).addTo(map);
      if (shape.getBounds) map.fitBounds(shape.getBounds().pad(0.5));
    }
    const state = { map, layers: null, marker: null };
    productLayers(map, job.id, { controls: document.getElementById("map-controls") }).then((res) => {
      state.layers = res;
      node.dataset.ready = res ? "yes" : "none";
    });
    if (job.timeseries.length) {
      document.getElementById("ts-help").hidden = false;
      map.on("click", async (ev) => {
        const { lat, lng } = ev.latlng.wrap();
        const info = document.getElementById("ts-info");
        if (state.marker) map.removeLayer(state.marker);
        state.marker = L.circleMarker(ev.latlng, { radius: 7, color: "#000", weight: 2, fillColor: "#fff", fillOpacity: 0.6, className: "ts-marker" }).addTo(map);
        info.textContent = "reading...";
        const r = await api("GET", `/api/jobs/${job.id}/pixel?lon=${lng.toFixed(7)}&lat=${lat.toFixed(7)}`);
        if (!r.ok) { info.textContent = errorText(r); return; }
        plot(document.getElementById("ts-plot"), r.data);
        const d = r.data;
        const csv = document.getElementById("ts-csv");
        csv.href = d.csv;
        csv.hidden = false;
        info.replaceChildren(`${d.lat.toFixed(5)}°N, ${d.lon.toFixed(5)}°E — pixel column ${d.col}, row ${d.row} of ${d.width}×${d.height}` +
          (d.crs ? ` (${d.crs} x=${d.x.toFixed(1)} y=${d.y.toFixed(1)})` : ""),
          ...d.series.map((s) => el("span", { class: "ts-velocity", "data-name": s.name, text: velocityText(s) })));
      });
    }
    return state;
  }

  // Campaign page: the frames' outlines coloured by status.
  async function campaignMap(node) {
    const map = baseMap(node);
    const r = await fetch(node.dataset.frames, { credentials: "same-origin" });
    if (!r.ok) { node.dataset.frames = "error"; return map; }
    const fc = await r.json();
    const colours = { done: "#1e8449", failed: "#b03a2e", running: "#b9770e" };
    const layer = L.geoJSON(fc, {
      style: (f) => ({ color: colours[f.properties.status] || "#1d2430", weight: 2, fillOpacity: 0.12,
        className: `campaign-frame frame-${f.properties.status}` }),
      onEachFeature: (f, lyr) => lyr.bindTooltip(`${f.properties.id} (track ${f.properties.track}): ${f.properties.status}`,
        { permanent: true, direction: "center", className: "frame-label" }),
    }).addTo(map);
    node.dataset.ready = String(fc.features.length);
    if (fc.features.length) map.fitBounds(layer.getBounds().pad(0.3));
    return map;
  }

  // Activation page: the AOI and the layers of a successful job of the activation.
  function activationMap(node, aoiText, jobIds) {
    const map = baseMap(node);
    const shape = parseAoi(aoiText);
    if (shape) {
      if (shape.setStyle) shape.setStyle({ color: "#c0392b", weight: 2, fill: false, className: "aoi-shape" });
      shape.addTo(map);
      if (shape.getBounds) map.fitBounds(shape.getBounds().pad(0.5));
    }
    const pick = document.getElementById(`${node.id}-job`);
    const controls = document.getElementById(`${node.id}-controls`);
    let shown = null;
    const show = async (jobId) => {
      if (shown) { shown.remove(); }
      const res = await productLayers(map, jobId, { controls });
      node.dataset.ready = res ? "yes" : "none";
    };
    if (jobIds.length) {
      if (pick) {
        pick.replaceChildren(...jobIds.map((j) => el("option", { value: j.id, text: j.label })));
        pick.addEventListener("change", () => { location.hash = pick.value; location.reload(); });
        const wanted = location.hash.slice(1);
        if (jobIds.some((j) => j.id === wanted)) pick.value = wanted;
      }
      show(pick ? pick.value : jobIds[0].id);
    } else node.dataset.ready = "none";
    return map;
  }

  function activationForm(node, input) {
    return aoiMap(node, input);
  }

  function velocityText(s) {
    const k = s.scale || 1, u = `${s.display_units || s.units}/yr`;
    const f = s.fit || {};
    let text = `${s.title || s.name}: `;
    text += f.velocity === null || f.velocity === undefined ? "no fit"
      : `fitted ${(f.velocity * k).toPrecision(3)}${f.sigma ? ` ± ${(f.sigma * k).toPrecision(2)}` : ""} ${u}`;
    const p = s.product || {};
    if (p.velocity !== undefined) {
      text += `; product ${(p.velocity * k).toPrecision(3)}${p.velocity_std !== undefined ? ` ± ${(p.velocity_std * k).toPrecision(2)}` : ""} ${u}`;
    }
    return text;
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1;
    const raw = span / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return ticks;
  }

  const COLOURS = ["#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e"];

  function plot(box, data) {
    const W = 640, H = 340, m = { l: 70, r: 30, t: 20, b: 50 };
    // Values in display units (InSAR: mm), with each series' least-squares line.
    const series = data.series.map((s) => ({ ...s, shown: s.values.map((v) => (v === null ? null : v * (s.scale || 1))) }));
    const useDates = series.every((s) => s.dates.every((d) => d));
    const xval = (s, k) => (useDates ? Date.parse(s.dates[k]) : k + 1);
    const xs = [], ys = [];
    for (const s of series) {
      s.shown.forEach((v, k) => { xs.push(xval(s, k)); if (v !== null) ys.push(v); });
    }
    const units = series[0].display_units || series[0].units || "m";
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    const xpad = (x1 - x0) * 0.06;
    x0 -= xpad; x1 += xpad;
    let y0 = Math.min(0, ...ys), y1 = Math.max(0, ...ys);
    if (y0 === y1) { y0 -= 1e-3; y1 += 1e-3; }
    const pad = (y1 - y0) * 0.08;
    y0 -= pad; y1 += pad;
    const X = (x) => m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r);
    const Y = (y) => H - m.b - (y - y0) / (y1 - y0) * (H - m.t - m.b);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot", role: "img",
      "aria-label": "displacement time series" });
    root.dataset.series = JSON.stringify({ col: data.col, row: data.row, series: data.series });
    root.append(svg("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, class: "frame" }));
    const yt = niceTicks(y0, y1, 5);
    const decimals = Math.max(0, -Math.floor(Math.log10((yt[1] - yt[0]) || 1)));
    for (const v of yt) {
      root.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), class: v === 0 ? "zero" : "grid" }));
      root.append(svg("text", { x: m.l - 6, y: Y(v) + 4, "text-anchor": "end", class: "tick" }, v.toFixed(decimals)));
    }
    const xTicks = useDates ? [...new Set(xs)].sort((a, b) => a - b) : [...new Set(xs)];
    const every = Math.ceil(xTicks.length / 7);
    xTicks.forEach((x, k) => {
      if (k % every) return;
      const label = useDates ? new Date(x).toISOString().slice(0, 10) : String(x);
      root.append(svg("text", { x: X(x), y: H - m.b + 18, "text-anchor": "middle", class: "tick" }, label));
    });
    root.append(svg("text", { x: 16, y: (m.t + H - m.b) / 2, transform: `rotate(-90 16 ${(m.t + H - m.b) / 2})`,
      "text-anchor": "middle", class: "axis" }, `displacement (${units})`));
    root.append(svg("text", { x: (m.l + W - m.r) / 2, y: H - 8, "text-anchor": "middle", class: "axis" },
      useDates ? "date" : "band"));
    const YEAR = 365.25 * 86400e3;
    series.forEach((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const k = s.scale || 1;
      const f = s.fit || {};
      if (useDates && f.velocity !== null && f.velocity !== undefined && f.t0) {
        const t0 = Date.parse(f.t0);
        const at = (x) => (f.intercept + f.velocity * (x - t0) / YEAR) * k;
        const xa = Math.min(...xs), xb = Math.max(...xs);
        root.append(svg("line", { x1: X(xa), y1: Y(at(xa)), x2: X(xb), y2: Y(at(xb)), class: "fit",
          stroke: colour, "data-name": s.name }));
        if (f.sigma) {  // 1-sigma envelope of the slope, pivoting on the mean date
          const tm = (xa + xb) / 2;
          const hi = (x) => at(x) + f.sigma * k * Math.abs(x - tm) / YEAR;
          const lo = (x) => at(x) - f.sigma * k * Math.abs(x - tm) / YEAR;
          const pts = [[xa, hi(xa)], [tm, at(tm)], [xb, hi(xb)], [xb, lo(xb)], [tm, at(tm)], [xa, lo(xa)]];
          root.append(svg("path", { d: "M" + pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("L") + "Z",
            class: "fit-band", fill: colour }));
        }
      }
      const pts = s.shown.map((v, kk) => (v === null ? null : [X(xval(s, kk)), Y(v), v, s.dates[kk]]));
      let d = "";
      let pen = false;
      for (const p of pts) {
        if (!p) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`;
        pen = true;
      }
      root.append(svg("path", { d, class: "line", stroke: colour, "data-name": s.name }));
      for (const p of pts) {
        if (!p) continue;
        const c = svg("circle", { cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 3.5, fill: colour });
        c.append(svg("title", {}, `${s.name} ${p[3] || ""}: ${p[2].toPrecision(4)} ${units}`));
        root.append(c);
      }
      root.append(svg("rect", { x: m.l + 10, y: m.t + 8 + 18 * i, width: 14, height: 4, fill: colour }));
      root.append(svg("text", { x: m.l + 30, y: m.t + 13 + 18 * i, class: "legend" }, s.title || s.name));
    });
    box.replaceChildren(root);
  }

  return { indexPage, jobPage, plot, makeWidget, authHeaders, maps, baseMap, aoiMap, productLayers,
    parseAoi, campaignMap, activationMap, activationForm };
})();
