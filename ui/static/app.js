// Gantry's dashboard: a single page over ui/server.ts's JSON API, redrawn from it every POLL_MS. Plain DOM (every
// text goes in through textContent), uPlot for the charts, and a table of each chart's numbers on demand.
'use strict';

// ?poll=MS (200 to 60000) polls faster or slower than every 2 s: the browser tests watch runs in fast motion.
const POLL_MS = Math.min(60_000, Math.max(200, Number(new URLSearchParams(location.search).get('poll')) || 2000));
const STAGES = ['ingest', 'train', 'evaluate', 'register', 'publish', 'rollout'];
const COLOURS = ['#0b5cad', '#d9480f', '#2b8a3e', '#862e9c', '#c2255c', '#1098ad', '#5c940d', '#e67700'];

const main = document.getElementById('main');
const notice = document.getElementById('notice');
const tokenInput = document.getElementById('admin-token');
tokenInput.value = sessionStorage.getItem('gantry-admin-token') ?? '';
tokenInput.addEventListener('input', () => sessionStorage.setItem('gantry-admin-token', tokenInput.value));
document.getElementById('token-form').addEventListener('submit', (e) => e.preventDefault());
// The skip link moves the focus, not the route (its #main is no page of the dashboard's).
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

/** Chart ids whose table of numbers is open: kept across redraws. */
const openTables = new Set();
let plots = [];
let lastJson = '';

/** h('a', { href: '#/x' }, 'text', child…): an element; strings become text nodes, never HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (x, digits = 4) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(digits));
const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(2)} %`);
const time = (iso) => (iso ? new Date(iso).toISOString().replace('T', ' ').slice(0, 19) : '–');
const badge = (text, cls = text) => h('span', { class: `badge s-${cls}` }, text);

function table(headers, rows, caption) {
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      caption ? h('caption', { class: 'meta' }, caption) : null,
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          headers.map((x) => h('th', { scope: 'col' }, x)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map((r) =>
          h(
            'tr',
            {},
            r.map((c) => (typeof c === 'number' ? h('td', { class: 'num' }, fmt(c)) : h('td', {}, c ?? '–'))),
          ),
        ),
      ),
    ),
  );
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw Object.assign(new Error(body.error ?? response.statusText), { status: response.status });
  return body;
}

function say(text) {
  notice.textContent = text;
}

/**
 * A chart with its caption, a uPlot plot and a "Show numbers" button that opens a table of every value.
 * spec: { id, title, x: number[], xLabel, time?: boolean, series: [{ label, values, dash? }], marks?: [{ x, label }] }
 * A scatter plot (scatter: true) draws points only; its x may be on a log scale (xScale: 'log') or categories
 * (xScale: 'category', categories: the labels of x = 0, 1, …).
 */
function chart(spec) {
  const captionId = `${spec.id}-caption`;
  const figure = h('figure', { class: 'chart', 'aria-labelledby': captionId });
  figure.append(h('figcaption', { id: captionId }, spec.title));
  const hasData = spec.x.length > 0 && spec.series.some((s) => s.values.some((v) => v !== null && v !== undefined));
  if (!hasData) {
    figure.append(h('p', { class: 'empty' }, spec.empty ?? 'No data yet.'));
    return figure;
  }
  const plotDiv = h('div', { class: 'plot', role: 'img', 'aria-label': `${spec.title}: chart; its numbers follow` });
  figure.append(plotDiv);
  const tableId = `${spec.id}-numbers`;
  const open = openTables.has(spec.id);
  const numbers = h(
    'div',
    { id: tableId, hidden: !open },
    table(
      [spec.xLabel, ...spec.series.map((s) => s.label)],
      spec.x.map((x, i) => [
        spec.time ? time(new Date(x * 1000).toISOString()) : spec.categories ? spec.categories[x] : String(x),
        ...spec.series.map((s) => s.values[i] ?? null),
      ]),
      `${spec.title}: the numbers`,
    ),
    spec.marks?.length
      ? h(
          'ul',
          { class: 'reasons' },
          spec.marks.map((m) =>
            h('li', {}, `${spec.time ? time(new Date(m.x * 1000).toISOString()) : m.x}: ${m.label}`),
          ),
        )
      : null,
  );
  const button = h(
    'button',
    {
      type: 'button',
      'aria-expanded': open ? 'true' : 'false',
      'aria-controls': tableId,
      'data-key': `numbers-${spec.id}`,
      onclick: () => {
        const nowOpen = numbers.hidden;
        numbers.hidden = !nowOpen;
        button.setAttribute('aria-expanded', String(nowOpen));
        button.textContent = nowOpen ? 'Hide numbers' : 'Show numbers';
        if (nowOpen) openTables.add(spec.id);
        else openTables.delete(spec.id);
      },
    },
    open ? 'Hide numbers' : 'Show numbers',
  );
  figure.append(button, numbers);
  // uPlot needs the element in the page to measure it: drawn once the view is attached.
  figure._draw = () => {
    const width = Math.max(240, plotDiv.clientWidth);
    const marks = spec.marks ?? [];
    const plot = new uPlot(
      {
        width,
        height: 220,
        scales: { x: xScaleOf(spec) },
        axes: [xAxisOf(spec), { size: 60 }],
        series: [
          { label: spec.xLabel },
          ...spec.series.map((s, i) => ({
            label: s.label,
            stroke: s.colour ?? COLOURS[i % COLOURS.length],
            width: s.dash ? 1.5 : 2,
            dash: s.dash,
            points: spec.scatter
              ? { show: true, size: 8, fill: s.colour ?? COLOURS[i % COLOURS.length] }
              : { show: spec.x.length < 40 },
            spanGaps: !spec.scatter,
            ...(spec.scatter ? { paths: () => null } : {}),
          })),
        ],
        hooks: {
          draw: [
            (u) => {
              // Each decision as a vertical line at its time.
              const ctx = u.ctx;
              ctx.save();
              ctx.strokeStyle = '#9a6700';
              ctx.fillStyle = '#9a6700';
              ctx.setLineDash([3, 3]);
              ctx.font = `${10 * devicePixelRatio}px sans-serif`;
              for (const m of marks) {
                const x = u.valToPos(m.x, 'x', true);
                if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
                ctx.beginPath();
                ctx.moveTo(x, u.bbox.top);
                ctx.lineTo(x, u.bbox.top + u.bbox.height);
                ctx.stroke();
                ctx.fillText(m.short ?? '', x + 3, u.bbox.top + 12 * devicePixelRatio);
              }
              ctx.restore();
            },
          ],
        },
      },
      [spec.x, ...spec.series.map((s) => s.values.map((v) => (v === undefined ? null : v)))],
      plotDiv,
    );
    plots.push({ plot, div: plotDiv });
  };
  return figure;
}

function xScaleOf(spec) {
  if (spec.xScale === 'log') return { time: false, distr: 3 };
  if (spec.xScale === 'category') return { time: false, range: () => [-0.5, spec.categories.length - 0.5] };
  if (spec.scatter) return { time: false, range: (_u, min, max) => (min === max ? [min - 1, max + 1] : [min, max]) };
  return { time: !!spec.time };
}

function xAxisOf(spec) {
  if (spec.time) return { label: spec.xLabel };
  if (spec.xScale === 'category')
    return {
      label: spec.xLabel,
      incrs: [1],
      values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? (spec.categories[t] ?? '') : '')),
    };
  // A label at each decade only (uPlot's own would round 0.0001 to 0).
  if (spec.xScale === 'log')
    return {
      label: spec.xLabel,
      values: (_u, ticks) =>
        ticks.map((t) =>
          Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9 ? String(Number(t.toPrecision(1))) : '',
        ),
    };
  if (spec.scatter) return { label: spec.xLabel };
  // Epochs are whole numbers: no tick at 1.5.
  return { label: spec.xLabel, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] };
}

function drawCharts(root) {
  for (const f of root.querySelectorAll('figure.chart')) f._draw?.();
}

window.addEventListener('resize', () => {
  for (const { plot, div } of plots) plot.setSize({ width: Math.max(240, div.clientWidth), height: 220 });
});

/** Replaces the view, keeping the focused control (by data-key or id) focused across the redraw. */
function show(nodes) {
  const focused = document.activeElement;
  const key = focused?.getAttribute?.('data-key') ?? (focused && main.contains(focused) ? focused.id : null);
  for (const { plot } of plots) plot.destroy();
  plots = [];
  main.replaceChildren(...nodes);
  drawCharts(main);
  if (key) {
    const again = main.querySelector(`[data-key="${CSS.escape(key)}"]`) ?? document.getElementById(key);
    again?.focus();
  }
}

// ---- runs ----

async function runsPage() {
  const { runs } = await api('/api/runs');
  return [
    h('h1', {}, 'Runs'),
    runs.length === 0
      ? h('p', {}, 'No runs yet: bin/gantry run fashion-mnist --follow')
      : table(
          ['Run', 'Status', 'Started', 'Closed'],
          runs.map((r) => [
            h('a', { href: `#/runs/${encodeURIComponent(r.runId)}`, 'data-key': `run-${r.runId}` }, r.runId),
            badge(r.status),
            time(r.startTime),
            time(r.closeTime),
          ]),
        ),
  ];
}

function curveCharts(idPrefix, curve, what) {
  const x = curve.map((p) => p.epoch);
  return [
    chart({
      id: `${idPrefix}-loss`,
      title: `Loss per epoch${what}`,
      xLabel: 'epoch',
      x,
      series: [
        { label: 'train loss', values: curve.map((p) => p.loss) },
        { label: 'validation loss', values: curve.map((p) => p.valLoss) },
      ],
      empty: 'No epoch has finished yet.',
    }),
    chart({
      id: `${idPrefix}-accuracy`,
      title: `Accuracy per epoch${what}`,
      xLabel: 'epoch',
      x,
      series: [
        { label: 'train accuracy', values: curve.map((p) => p.accuracy) },
        { label: 'validation accuracy', values: curve.map((p) => p.valAccuracy) },
      ],
      empty: 'No epoch has finished yet.',
    }),
  ];
}

async function runPage(runId) {
  const run = await api(`/api/runs/${encodeURIComponent(runId)}`);
  const p = run.progress;
  const result = run.result && typeof run.result === 'object' ? run.result : null;
  const nodes = [
    h('p', {}, h('a', { href: '#/runs' }, '← all runs')),
    h('h1', {}, `Run ${run.runId}`),
    h(
      'p',
      { class: 'meta' },
      badge(run.status),
      ` started ${time(run.startTime)}`,
      run.closeTime ? `, closed ${time(run.closeTime)}` : '',
      p ? ` · pipeline ${p.pipeline} · model ` : '',
      p ? h('a', { href: `#/models/${encodeURIComponent(p.model)}` }, p.model) : '',
      run.temporalUrl ? ' · ' : '',
      run.temporalUrl ? h('a', { href: run.temporalUrl, target: '_blank', rel: 'noopener' }, "Temporal's Web UI") : '',
    ),
  ];
  if (run.error) nodes.push(h('p', { role: 'alert' }, `Error: ${run.error}`));
  if (!p) {
    nodes.push(h('p', {}, 'No worker answers this run’s progress query right now.'));
    return nodes;
  }
  nodes.push(
    h('h2', {}, 'Stages'),
    h(
      'ol',
      { class: 'timeline', 'aria-label': 'stages in order' },
      STAGES.map((s) => h('li', { 'data-stage': s }, h('strong', {}, s), badge(p.stages[s]))),
    ),
  );
  if (p.stopped) nodes.push(h('p', {}, `Stopped by step ${p.stopped.step}: ${p.stopped.reason}`));

  nodes.push(h('h2', {}, 'Training'));
  const t = p.train;
  if (t)
    nodes.push(
      h(
        'p',
        { id: 'train-status' },
        `epoch ${t.epoch}/${t.epochs}, step ${t.step}/${t.stepsPerEpoch}, loss ${fmt(t.loss)}, accuracy ` +
          `${fmt(t.accuracy)}, ${Math.round(t.samplesPerSecond)} samples/s on ${t.backend}` +
          (t.attempt > 1 ? ` (attempt ${t.attempt})` : ''),
      ),
    );
  const curve = p.curve?.length ? p.curve : (result?.train?.history ?? []);
  nodes.push(h('div', { class: 'charts', id: 'curves' }, curveCharts('curve', curve, '')));
  const ranks = (run.job?.replicas ?? []).filter((r) => r.curve?.length);
  if (ranks.length) {
    const epochs = [...new Set(ranks.flatMap((r) => r.curve.map((c) => c.epoch)))].sort((a, b) => a - b);
    const per = (key) =>
      ranks.map((r) => ({
        label: `rank ${r.rank} ${key}`,
        values: epochs.map((e) => r.curve.find((c) => c.epoch === e)?.[key] ?? null),
      }));
    nodes.push(
      h('h3', {}, `Per rank (${run.job.strategy}, attempt ${run.job.attempt})`),
      h(
        'div',
        { class: 'charts' },
        chart({ id: 'rank-loss', title: 'Loss per epoch, per rank', xLabel: 'epoch', x: epochs, series: per('loss') }),
        chart({
          id: 'rank-accuracy',
          title: 'Validation accuracy per epoch, per rank',
          xLabel: 'epoch',
          x: epochs,
          series: per('valAccuracy'),
        }),
      ),
    );
  }

  nodes.push(h('h2', {}, 'Evaluation'));
  const ev = p.evaluation;
  if (!ev) nodes.push(h('p', {}, 'Not evaluated yet.'));
  else {
    nodes.push(
      h('p', {}, ev.blessed ? badge('blessed', 'done') : badge('not blessed', 'failed'), ' against the champion'),
      metricsTable(ev),
      h(
        'ul',
        { class: 'reasons', 'aria-label': 'gates' },
        ev.reasons.map((r) => h('li', {}, r)),
      ),
    );
  }

  nodes.push(h('h2', {}, 'Data'));
  if (!p.dataset) nodes.push(h('p', {}, 'Not ingested yet.'));
  else {
    const d = p.dataset;
    nodes.push(
      table(
        ['fingerprint', 'train', 'validation', 'test', 'drift'],
        [
          [
            d.fingerprint.slice(0, 16),
            String(d.counts.train),
            String(d.counts.validation),
            String(d.counts.test),
            d.drifted ? badge('drifted', 'failed') : badge('no drift', 'done'),
          ],
        ],
      ),
      d.driftReasons.length
        ? h(
            'ul',
            { class: 'reasons' },
            d.driftReasons.map((r) => h('li', {}, r)),
          )
        : null,
    );
    const drift = result?.dataset?.drift;
    if (drift)
      nodes.push(
        h(
          'details',
          {},
          h('summary', {}, 'Drift report (every feature)'),
          h('pre', {}, JSON.stringify(drift, null, 2)),
        ),
      );
  }
  nodes.push(h('h2', {}, 'Rollout'));
  if (p.rolloutId || p.rollout)
    nodes.push(
      h(
        'p',
        {},
        p.rollout ? badge(p.rollout.result) : badge('running'),
        ' ',
        p.rollout ? p.rollout.reasons.join('; ') : '',
        ' · ',
        h('a', { href: `#/models/${encodeURIComponent(p.model)}` }, `the rollout of ${p.model}`),
      ),
    );
  else nodes.push(h('p', {}, p.stages.rollout === 'skipped' ? 'No rollout for this run.' : 'Not started yet.'));
  return nodes;
}

/** The candidate's and the champion's test metrics, measured on this run's test split. */
function metricsTable(ev) {
  const all = (m) => ({ loss: m.loss, ...(m.task === 'regression' ? {} : { accuracy: m.accuracy }), ...m.metrics });
  const candidate = all(ev.candidate);
  const names = Object.keys(candidate);
  const rows = [['candidate', ...names.map((n) => candidate[n])]];
  if (ev.champion) {
    const champion = all(ev.champion.metrics);
    rows.push([`champion v${ev.champion.version}`, ...names.map((n) => champion[n] ?? null)]);
  }
  return table(['', ...names], rows, `on ${ev.candidate.count} test examples`);
}

// ---- models ----

async function modelsPage() {
  const { models } = await api('/api/models');
  return [
    h('h1', {}, 'Models'),
    models.length === 0
      ? h('p', {}, 'No models registered yet.')
      : table(
          ['Model', 'Versions', 'Aliases', 'Serving'],
          models.map((m) => [
            h('a', { href: `#/models/${encodeURIComponent(m.model)}`, 'data-key': `model-${m.model}` }, m.model),
            String(m.versions.length),
            aliasText(m.aliases),
            m.serving?.note ?? '–',
          ]),
        ),
  ];
}

const aliasText = (aliases) =>
  Object.entries(aliases)
    .map(([a, v]) => `${a} → v${v}`)
    .join(', ') || 'none';

/** The leaves of a spec that differ from its parent's: "path: old → new". */
function specDiff(spec, parent) {
  const out = [];
  const walk = (a, b, path) => {
    if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], path ? `${path}.${k}` : k);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(`${path}: ${JSON.stringify(b) ?? '–'} → ${JSON.stringify(a) ?? '–'}`);
    }
  };
  walk(spec, parent, '');
  return out;
}

async function act(path, body, question) {
  if (!window.confirm(question)) {
    say('Cancelled.');
    return;
  }
  const token = tokenInput.value.trim();
  try {
    await api(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    say(`Done: ${question}`);
    lastJson = '';
    void render();
  } catch (error) {
    const why =
      error.status === 401 || error.status === 403 ? `Refused (${error.status}): ${error.message}` : error.message;
    say(why);
  }
}

function rolloutSection(model, r) {
  const nodes = [h('h2', {}, `Rollout of v${r.candidate}`)];
  nodes.push(
    h(
      'p',
      { id: 'rollout-phase' },
      badge(r.phase),
      ` against ${r.champion === null ? 'no champion' : `v${r.champion}`}`,
      r.step ? `, step ${r.step} of ${r.steps} at ${r.percent} %` : '',
      r.plan ? ` · plan: ${r.plan.map((s) => `${s.percent} % for ${s.bake}`).join(', ')}` : '',
      r.outcome ? ` · ${r.outcome.result}: ${r.outcome.reasons.join('; ')}` : '',
    ),
  );
  // A rollout that has decided may still be finishing (its workflow runs on for a moment): nothing to act on.
  if (r.running && !r.outcome)
    nodes.push(
      h(
        'div',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            'data-key': 'approve',
            onclick: () => act(`/api/models/${model}/approve`, {}, `Approve the rollout of v${r.candidate}?`),
          },
          'Approve',
        ),
        h(
          'button',
          {
            type: 'button',
            'data-key': 'promote-candidate',
            onclick: () =>
              act(
                `/api/models/${model}/promote`,
                { version: r.candidate },
                `Promote v${r.candidate} now, ending its canary?`,
              ),
          },
          `Promote v${r.candidate} now`,
        ),
        h(
          'button',
          {
            type: 'button',
            'data-key': 'rollback',
            onclick: () => act(`/api/models/${model}/rollback`, {}, `Roll back v${r.candidate}?`),
          },
          'Roll back',
        ),
      ),
    );
  const points = r.analyses.length ? r.analyses : r.decisions;
  const x = points.map((a) => Date.parse(a.at) / 1000);
  const marks = r.decisions
    .filter((d) => d.action !== 'analyse')
    .map((d) => ({
      x: Date.parse(d.at) / 1000,
      short: d.action,
      label: `${d.phase === 'canary' ? `step ${d.step} (${d.percent} %)` : d.phase} ${d.action}: ${d.message}`,
    }));
  const th = r.thresholds ?? {};
  const both = (key, threshold) => [
    { label: `v${r.candidate} (candidate)`, values: points.map((a) => a.canary?.[key] ?? null) },
    { label: `v${r.champion ?? '–'} (champion)`, values: points.map((a) => a.champion?.[key] ?? null) },
    ...(threshold
      ? [{ ...threshold, values: points.map(() => threshold.value), dash: [6, 4], colour: '#b42318' }]
      : []),
  ];
  const charts = [
    chart({
      id: 'ro-requests',
      title: 'Requests per window',
      xLabel: 'time',
      time: true,
      x,
      marks,
      series: both('requests'),
    }),
    chart({
      id: 'ro-errors',
      title: 'Error rate',
      xLabel: 'time',
      time: true,
      x,
      marks,
      series: both(
        'errorRate',
        th.maxErrorRate !== undefined ? { label: 'max error rate', value: th.maxErrorRate } : null,
      ),
    }),
    chart({
      id: 'ro-latency',
      title: 'Latency p90 and p99 (ms)',
      xLabel: 'time',
      time: true,
      x,
      marks,
      series: [
        { label: `v${r.candidate} p90`, values: points.map((a) => a.canary?.p90Ms ?? null) },
        { label: `v${r.candidate} p99`, values: points.map((a) => a.canary?.p99Ms ?? null) },
        { label: `v${r.champion ?? '–'} p90`, values: points.map((a) => a.champion?.p90Ms ?? null) },
        { label: `v${r.champion ?? '–'} p99`, values: points.map((a) => a.champion?.p99Ms ?? null) },
        ...(th.maxP99LatencyMs !== undefined
          ? [{ label: 'max p99', values: points.map(() => th.maxP99LatencyMs), dash: [6, 4], colour: '#b42318' }]
          : []),
      ],
    }),
    chart({
      id: 'ro-accuracy',
      title: 'Online accuracy (from feedback)',
      xLabel: 'time',
      time: true,
      x,
      marks,
      series: both(
        'accuracy',
        th.minOnlineAccuracy !== undefined ? { label: 'min online accuracy', value: th.minOnlineAccuracy } : null,
      ),
    }),
    chart({
      id: 'ro-divergence',
      title: 'Prediction divergence from the champion (bits)',
      xLabel: 'time',
      time: true,
      x,
      marks,
      series: [
        { label: 'Jensen-Shannon divergence', values: points.map((a) => a.divergence) },
        ...(th.maxPredictionDivergence !== undefined
          ? [
              {
                label: 'max divergence',
                values: points.map(() => th.maxPredictionDivergence),
                dash: [6, 4],
                colour: '#b42318',
              },
            ]
          : []),
      ],
    }),
  ];
  nodes.push(h('div', { class: 'charts' }, charts));
  nodes.push(
    h('h3', {}, 'Decisions'),
    h(
      'ol',
      { class: 'decisions', id: 'decisions' },
      r.decisions.map((d) =>
        h(
          'li',
          {},
          `${time(d.at)} `,
          h('strong', {}, d.phase === 'canary' ? `step ${d.step} (${d.percent} %)` : d.phase),
          ' ',
          badge(d.action),
          ` ${d.message}`,
        ),
      ),
    ),
  );
  return nodes;
}

function experimentSection(model, e) {
  const nodes = [h('h2', {}, 'Experiment')];
  nodes.push(
    h(
      'p',
      {},
      badge(e.phase),
      ` ${time(e.startedAt)} → ${time(e.endsAt)}`,
      e.stoppedEarly ? ' (stopped early)' : '',
      e.verdict ? ` · verdict: ${e.verdict.summary}` : '',
    ),
  );
  if (e.running)
    nodes.push(
      h(
        'div',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            'data-key': 'stop-experiment',
            onclick: () => act(`/api/models/${model}/experiment/stop`, {}, `Stop the experiment on ${model} now?`),
          },
          'Stop experiment',
        ),
      ),
    );
  // Each arm's accuracy with its 95 % interval, drawn as a bar on 0–100 %; the table below says the same.
  const rowH = 26;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'ci');
  svg.setAttribute('viewBox', `0 0 500 ${e.arms.length * rowH + 20}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'online accuracy of each arm with its 95 % interval; the table follows');
  const add = (tag, attrs, text) => {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text) el.textContent = text;
    svg.append(el);
  };
  const sx = (v) => 60 + v * 420;
  e.arms.forEach((a, i) => {
    const y = 10 + i * rowH + rowH / 2;
    add('text', { x: 0, y: y + 4, 'font-size': 12 }, `v${a.version}`);
    add('line', { x1: sx(0), x2: sx(1), y1: y, y2: y, stroke: '#d5dae1' });
    if (a.interval)
      add('line', {
        x1: sx(a.interval.low),
        x2: sx(a.interval.high),
        y1: y,
        y2: y,
        stroke: COLOURS[i],
        'stroke-width': 6,
      });
    if (a.accuracy !== null) add('circle', { cx: sx(a.accuracy), cy: y, r: 5, fill: '#1d2430' });
  });
  nodes.push(
    svg,
    table(
      ['arm', 'weight', 'requests', 'labelled', 'online accuracy', '95 % interval'],
      e.arms.map((a) => [
        `v${a.version}`,
        String(a.weight),
        String(a.requests),
        String(a.labelled),
        pct(a.accuracy),
        a.interval ? `${pct(a.interval.low)} – ${pct(a.interval.high)}` : '–',
      ]),
      'Arms',
    ),
  );
  if (e.verdict?.comparisons?.length)
    nodes.push(
      table(
        ['against', 'z', 'p-value', 'significant'],
        e.verdict.comparisons.map((c) => [`v${c.against}`, c.z, c.pValue, c.significant ? 'yes' : 'no']),
        `Comparisons of v${e.verdict.best} (alpha ${e.verdict.alpha})`,
      ),
    );
  return nodes;
}

async function modelPage(model) {
  const { registry, rollout, experiment } = await api(`/api/models/${encodeURIComponent(model)}`);
  const byVersion = new Map(registry.versions.map((v) => [v.version, v]));
  const nodes = [
    h('p', {}, h('a', { href: '#/models' }, '← all models')),
    h('h1', {}, `Model ${registry.model}`),
    h('p', { class: 'meta' }, `aliases: ${aliasText(registry.aliases)}`),
    h('h2', {}, 'Versions'),
    table(
      ['version', 'status', 'blessed', 'test accuracy', 'dataset', 'parent', 'code', 'made by', 'registered', ''],
      [...registry.versions].reverse().map((v) => [
        `v${v.version}`,
        v.rolledBack
          ? badge('rolled back', 'rolled-back')
          : badge(v.status, v.status === 'published' ? 'done' : 'pending'),
        v.blessed ? 'yes' : 'no',
        v.metrics ? pct(v.metrics.testAccuracy) : 'unevaluated',
        v.lineage.datasetFingerprint.slice(0, 12) || '–',
        v.lineage.parentVersion ? `v${v.lineage.parentVersion}` : '–',
        v.lineage.gitCommit ? v.lineage.gitCommit.slice(0, 10) : '–',
        v.lineage.source
          ? `import (${v.lineage.source.format})`
          : h('a', { href: `#/runs/${encodeURIComponent(v.lineage.runId)}` }, v.lineage.runId),
        time(v.registeredAt),
        v.status === 'published'
          ? h(
              'button',
              {
                type: 'button',
                'data-key': `promote-v${v.version}`,
                onclick: () =>
                  act(`/api/models/${model}/promote`, { version: v.version }, `Promote v${v.version} of ${model}?`),
              },
              `Promote v${v.version}`,
            )
          : '',
      ]),
    ),
  ];
  const diffs = registry.versions
    .filter((v) => v.lineage.parentVersion && byVersion.get(v.lineage.parentVersion))
    .map((v) => ({ v, diff: specDiff(v.lineage.spec, byVersion.get(v.lineage.parentVersion).lineage.spec) }));
  if (diffs.length)
    nodes.push(
      h('h3', {}, 'Spec changes against the parent version'),
      h(
        'ul',
        { class: 'reasons' },
        diffs.map(({ v, diff }) =>
          h(
            'li',
            {},
            `v${v.version} (parent v${v.lineage.parentVersion}): ${diff.length ? diff.join('; ') : 'same spec'}`,
          ),
        ),
      ),
    );
  nodes.push(h('h2', {}, 'Serving'));
  const s = registry.serving;
  if (!s) nodes.push(h('p', {}, 'Nothing desired yet.'));
  else
    nodes.push(
      h('p', {}, s.note),
      table(
        ['loaded versions', 'split', 'labels', 'shadow'],
        [
          [
            s.versions.map((v) => `v${v}`).join(', ') || '–',
            s.split ? s.split.map((x) => `v${x.version}: ${x.weight}`).join(', ') : 'latest loaded',
            aliasText(s.labels),
            s.shadow ? `v${s.shadow.version} (${s.shadow.percent} %)` : '–',
          ],
        ],
      ),
    );
  if (registry.lastApply)
    nodes.push(
      table(
        ['server', 'in sync', 'changed'],
        registry.lastApply.servers.map((x) => [x.url, x.ok ? 'yes' : `no: ${x.error}`, x.changed.join(', ') || '–']),
        'Model servers',
      ),
    );
  const champion = registry.aliases[registry.championAlias ?? 'champion'];
  if (champion !== undefined && !(rollout?.running && !rollout.outcome))
    nodes.push(
      h(
        'div',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            'data-key': 'rollback-champion',
            onclick: () => act(`/api/models/${model}/rollback`, {}, `Roll ${model} back from v${champion}?`),
          },
          `Roll back from v${champion}`,
        ),
      ),
    );
  if (rollout) nodes.push(h('section', { id: 'rollout' }, rolloutSection(model, rollout)));
  if (experiment) nodes.push(h('section', { id: 'experiment' }, experimentSection(model, experiment)));
  if (registry.events?.length)
    nodes.push(
      h('h2', {}, 'Recent decisions'),
      h(
        'ol',
        { class: 'decisions' },
        registry.events
          .slice(-20)
          .reverse()
          .map((e) => h('li', {}, `${time(e.at)} `, badge(e.kind), ` ${e.message}`)),
      ),
    );
  return nodes;
}

// ---- tuning ----

/** A parameter's value as the CLI writes it (cli/tune-format.ts): lists in brackets, small reals in exponents. */
function paramText(v) {
  if (Array.isArray(v)) return `[${v.join(',')}]`;
  if (typeof v !== 'number' || Number.isInteger(v)) return String(v);
  return Math.abs(v) < 0.01 ? v.toExponential(2) : v.toPrecision(3);
}

const paramsText = (params) =>
  Object.keys(params)
    .sort()
    .map((k) => `${k.split('.').at(-1)}=${paramText(params[k])}`)
    .join(' ');

async function tuningPage() {
  const { studies } = await api('/api/tuning');
  return [
    h('h1', {}, 'Tuning studies'),
    studies.length === 0
      ? h('p', {}, 'No studies yet: bin/gantry tune fashion-mnist --follow')
      : table(
          ['Study', 'Status', 'Algorithm', 'Objective', 'Trials done', 'Best', 'Started'],
          studies.map(({ studyId, status, startTime, study: s }) => {
            const done = s ? s.trials.filter((t) => ['completed', 'stopped', 'failed'].includes(t.state)).length : 0;
            return [
              h('a', { href: `#/tuning/${encodeURIComponent(studyId)}`, 'data-key': `study-${studyId}` }, studyId),
              badge(s ? s.status : status.toLowerCase(), s?.status === 'completed' ? 'done' : (s?.status ?? status)),
              s ? s.algorithm : '–',
              s ? `validation ${s.objective.metric} (${s.objective.goal})` : '–',
              s ? `${done}/${s.budget.trials}` : '–',
              s?.best ? `${fmt(s.best.metric)} (trial ${s.best.trial})` : '–',
              time(startTime),
            ];
          }),
        ),
  ];
}

/** The trial's state as the CLI says it, with its live epoch while it trains. */
function trialState(t) {
  const text =
    t.state === 'running' && t.progress
      ? `running (epoch ${t.progress.epoch} step ${t.progress.step}/${t.progress.stepsPerEpoch})`
      : t.state;
  return badge(text, t.state === 'completed' ? 'done' : t.state);
}

function studyCharts(s, params) {
  const metric = `validation ${s.objective.metric}`;
  const scored = s.trials.filter((t) => t.metric !== null);
  return params.map((p, index) => {
    const xOf = (t) => {
      const v = t.params[p.path];
      if (v === undefined) return null;
      // The category's text as ui/views.ts names it.
      return p.scale === 'category' ? p.categories.indexOf(Array.isArray(v) ? `[${v.join(',')}]` : String(v)) : v;
    };
    // uPlot wants x ascending: trials sorted by their value of this parameter.
    const points = scored
      .map((t) => ({ t, x: xOf(t) }))
      .filter((q) => typeof q.x === 'number' && !(p.scale !== 'linear' && q.x < 0) && !(p.scale === 'log' && q.x === 0))
      .sort((a, b) => a.x - b.x || a.t.trial - b.t.trial);
    const best = s.best?.trial;
    return chart({
      id: `param-${index}`,
      title: `${metric} against ${p.path}${p.scale === 'log' ? ' (log scale)' : ''}`,
      xLabel: p.path,
      x: points.map((q) => q.x),
      xScale: p.scale === 'linear' ? undefined : p.scale,
      categories: p.categories ?? undefined,
      scatter: true,
      series: [
        { label: `${metric} (trial)`, values: points.map((q) => (q.t.trial === best ? null : q.t.metric)) },
        {
          label: `${metric} (best trial)`,
          values: points.map((q) => (q.t.trial === best ? q.t.metric : null)),
          colour: '#d9480f',
        },
      ],
      empty: 'No trial has a validation value yet.',
    });
  });
}

async function studyPage(studyId) {
  const {
    status,
    startTime,
    closeTime,
    study: s,
    params,
    temporalUrl,
  } = await api(`/api/tuning/${encodeURIComponent(studyId)}`);
  const nodes = [
    h('p', {}, h('a', { href: '#/tuning' }, '← all studies')),
    h('h1', {}, `Study ${studyId}`),
    h(
      'p',
      { class: 'meta' },
      badge(status),
      ` started ${time(startTime)}`,
      closeTime ? `, closed ${time(closeTime)}` : '',
      temporalUrl ? ' · ' : '',
      temporalUrl ? h('a', { href: temporalUrl, target: '_blank', rel: 'noopener' }, "Temporal's Web UI") : '',
    ),
  ];
  if (!s) {
    nodes.push(h('p', {}, 'No worker answers this study’s status query right now.'));
    return nodes;
  }
  const metric = s.objective.metric;
  nodes.push(
    h(
      'p',
      { id: 'study-summary' },
      badge(s.status, s.status === 'completed' ? 'done' : s.status),
      ` pipeline ${s.pipeline} · model `,
      h('a', { href: `#/models/${encodeURIComponent(s.model)}` }, s.model),
      ` · ${s.algorithm} · objective validation ${metric} (${s.objective.goal}) · ${s.trials.length}/` +
        `${s.budget.trials} trials` +
        (s.budget.epochs !== null ? ` · ${s.epochsTrained}/${s.budget.epochs} epochs` : '') +
        ` · parallel ${s.parallelism}`,
    ),
  );
  if (s.error) nodes.push(h('p', { role: 'alert' }, `Error: ${s.error}`));
  nodes.push(h('h2', {}, 'Best trial'));
  if (!s.best) nodes.push(h('p', { id: 'best' }, 'No trial has finished yet.'));
  else
    nodes.push(
      h(
        'p',
        { id: 'best' },
        `trial ${s.best.trial}: validation ${metric} ${fmt(s.best.metric)} after ${s.best.epochs} epochs ` +
          `(${paramsText(s.best.params)})`,
        s.runId ? ' · its run ' : '',
        s.runId ? h('a', { href: `#/runs/${encodeURIComponent(s.runId)}`, 'data-key': 'best-run' }, s.runId) : '',
        s.version !== null ? ` registered v${s.version}` : '',
      ),
    );
  nodes.push(
    h('h2', {}, 'Trials'),
    h(
      'div',
      { id: 'trials' },
      table(
        ['trial', 'state', 'epochs', metric, `best ${metric}`, ...params.map((p) => p.path), 'note'],
        s.trials.map((t) => [
          String(t.trial),
          trialState(t),
          `${t.epochs}/${t.targetEpochs}`,
          t.metric,
          t.bestMetric,
          ...params.map((p) => (t.params[p.path] === undefined ? '–' : paramText(t.params[p.path]))),
          [
            t.stoppedReason ? `stopped early: ${t.stoppedReason}` : '',
            t.error ? `failed: ${t.error}` : '',
            t.attempts > t.trainings ? `${t.attempts - t.trainings} retried attempt(s)` : '',
          ]
            .filter(Boolean)
            .join('; ') || '–',
        ]),
      ),
    ),
    h('h2', {}, 'Parameters against the objective'),
    h('div', { class: 'charts', id: 'study-charts' }, studyCharts(s, params)),
  );
  return nodes;
}

// ---- routing and polling ----

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (parts[0] === 'runs' && parts[1]) return { section: 'runs', load: () => runPage(parts[1]), title: parts[1] };
  if (parts[0] === 'models' && parts[1]) return { section: 'models', load: () => modelPage(parts[1]), title: parts[1] };
  if (parts[0] === 'models') return { section: 'models', load: modelsPage, title: 'Models' };
  if (parts[0] === 'tuning' && parts[1]) return { section: 'tuning', load: () => studyPage(parts[1]), title: parts[1] };
  if (parts[0] === 'tuning') return { section: 'tuning', load: tuningPage, title: 'Tuning' };
  return { section: 'runs', load: runsPage, title: 'Runs' };
}

let rendering = false;
async function render() {
  if (rendering) return;
  rendering = true;
  const r = route();
  try {
    const nodes = await r.load();
    document.title = `${r.title} · Gantry`;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.section === r.section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    // Redrawn only when something changed, so a reader's place (and an open table) stays put.
    const text = nodes.map((n) => n.textContent).join('\n');
    if (text !== lastJson) {
      lastJson = text;
      show(nodes);
    }
  } catch (error) {
    show([h('h1', {}, r.title), h('p', { role: 'alert' }, error.message)]);
    lastJson = '';
  } finally {
    rendering = false;
  }
}

window.addEventListener('hashchange', () => {
  lastJson = '';
  void render().then(() => main.focus());
});
void render();
setInterval(render, POLL_MS);
