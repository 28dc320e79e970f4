// The playground's console: GraphiQL (completion, inline validation, docs,
// variables, headers, history) against /graphql, plus what GraphiQL has no
// notion of: who the caller is (the x-playground-identity header), links that
// carry the query, and the live panel of /stats.
"use strict";

(function () {
  const IDENTITY_HEADER = "x-playground-identity";
  const DEFAULT_QUERY = `# Who may read what depends on "Who am I" above.
query Page($studentId: ID!, $limit: Int) {
  getAssessments(studentId: $studentId, limit: $limit) {
    items { id assessmentType administeredAt scaledScore percentile benchmarkBand }
    nextToken
  }
}
`;
  const DEFAULT_VARIABLES = '{\n  "studentId": "stu-0001",\n  "limit": 5\n}';

  const params = new URLSearchParams(window.location.search);
  const personas = JSON.parse(document.getElementById("personas").textContent);
  let identity = params.get("identity") || "api-key";

  // Links carry the query, variables, headers and identity.
  function remember(key, value) {
    const url = new URL(window.location.href);
    if (value) {
      url.searchParams.set(key, value);
    } else {
      url.searchParams.delete(key);
    }
    url.searchParams.delete("run");
    window.history.replaceState(null, "", url);
  }

  const select = document.getElementById("identity");
  const hint = document.getElementById("identity-hint");
  for (const persona of personas) {
    const option = document.createElement("option");
    option.value = persona.name;
    option.textContent = persona.name;
    select.appendChild(option);
  }
  if (!personas.some((p) => p.name === identity)) {
    identity = "api-key";
  }
  select.value = identity;
  function showHint() {
    const persona = personas.find((p) => p.name === identity);
    hint.textContent = persona ? persona.description : "";
  }
  showHint();
  select.addEventListener("change", () => {
    identity = select.value;
    remember("identity", identity === "api-key" ? "" : identity);
    showHint();
  });
  document.getElementById("share").addEventListener("click", () => {
    navigator.clipboard?.writeText(window.location.href);
  });

  // The panel: /stats, once a second and after every request.
  const text = (id, value, cls) => {
    const el = document.getElementById(id);
    el.textContent = value;
    el.className = cls || "";
  };
  const ms = (v) => (v === undefined || v === null ? "" : `${v.toFixed(1)} ms`);
  async function refreshPanel() {
    let stats;
    try {
      const response = await fetch("/stats");
      stats = await response.json();
    } catch (e) {
      return;
    }
    const native = stats.native || {};
    const live = native.liveResultHandles;
    text("panel-live-handles", String(live ?? "?"), live === 0 ? "ok" : "busy");
    text("panel-violations", String(native.violations ?? "?"), native.violations ? "bad" : "ok");
    const iso = stats.isolation;
    if (iso) {
      text("panel-workers", `${iso.workers} (${iso.maxWorkers})`);
      text("panel-crashes", `${iso.crashes} / ${iso.hangs}`, iso.crashes || iso.hangs ? "bad" : "ok");
      const breaker = iso.breaker ?? "closed";
      text("panel-breaker", breaker, breaker === "closed" ? "ok" : "bad");
    } else {
      text("panel-workers", "in process");
      text("panel-crashes", "–");
      text("panel-breaker", "–");
    }
    const pool = stats.pool;
    text("panel-pool", `${pool.inUse} / ${pool.peak} / ${pool.max}`, pool.inUse === 0 ? "ok" : "busy");
    text("panel-pool-size", String(pool.size));
    text("panel-invocations", String(stats.invocations));
    const last = stats.lastInvocation;
    if (last) {
      text("panel-last-total", ms(last.durationMs));
      text("panel-last-dynamodb", ms(last.dynamodbMs));
      text("panel-last-sql", ms(last.sqlMs));
      text("panel-last-legacy", ms(last.legacyMs));
      text("panel-last-items", `${last.items} / ${last.errors}`, last.errors ? "busy" : "");
    }
    renderTrace(stats.lastTrace);
  }

  // The last invocation's X-Ray spans: one row each, indented by depth,
  // with a bar placed on the invocation's time line.
  function renderTrace(trace) {
    const list = document.getElementById("panel-trace");
    if (!trace || !trace.spans || trace.spans.length === 0) {
      return;
    }
    const whole = Math.max(...trace.spans.map((s) => s.startMs + s.durationMs), 0.001);
    list.replaceChildren(...trace.spans.map((span) => {
      const item = document.createElement("li");
      item.className = span.fault ? "fault" : "";
      item.style.paddingLeft = `${span.depth * 0.8}em`;
      item.title = span.cause ? `${span.name}: ${span.cause}` : span.name;
      const row = document.createElement("div");
      row.className = "span";
      const name = document.createElement("span");
      name.textContent = span.detail ? `${span.name} (${span.detail})` : span.name;
      const time = document.createElement("span");
      time.className = "time";
      time.textContent = ms(span.durationMs);
      row.append(name, time);
      const track = document.createElement("div");
      track.className = "track";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.left = `${(100 * span.startMs) / whole}%`;
      bar.style.width = `${(100 * span.durationMs) / whole}%`;
      track.append(bar);
      item.append(row, track);
      return item;
    }));
  }
  refreshPanel();
  window.setInterval(refreshPanel, 1000);

  async function fetcher(graphQLParams, options) {
    const headers = Object.assign({ "content-type": "application/json" }, options?.headers || {});
    headers[IDENTITY_HEADER] = identity;
    const response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify(graphQLParams),
    });
    const body = await response.json();
    window.setTimeout(refreshPanel, 0);
    return body;
  }

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: DEFAULT_QUERY,
      query: params.get("query") ?? undefined,
      variables: params.get("variables") ?? (params.get("query") ? undefined : DEFAULT_VARIABLES),
      headers: params.get("headers") ?? undefined,
      onEditQuery: (q) => remember("query", q),
      onEditVariables: (v) => remember("variables", v),
      onEditHeaders: (h) => remember("headers", h),
      defaultEditorToolsVisibility: true,
      shouldPersistHeaders: false,
    }),
  );

  // ?run=1: run the linked query once the schema has loaded.
  if (params.get("run") === "1") {
    const started = Date.now();
    const tryRun = () => {
      const button = document.querySelector(".graphiql-execute-button");
      const loaded = document.querySelector(".graphiql-doc-explorer, .graphiql-sidebar");
      if (button && loaded) {
        button.click();
      } else if (Date.now() - started < 10000) {
        window.setTimeout(tryRun, 100);
      }
    };
    window.setTimeout(tryRun, 300);
  }
})();
