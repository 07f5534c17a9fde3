import { z } from 'zod';
import { describeIssues } from '../validation/issues';
import { ModelConfigSchema, type ModelConfig } from './config';
import type { PutModelBodySchema } from './admin';
import { StateFileSchema, TrafficSchema, type ServingStateData, type Traffic } from './state';
import type { FeedbackResult } from './feedback';
import type { MetricFamily } from './metrics-snapshot';
import { CLIENT_KEY_HEADER, REQUEST_ID_HEADER, VERSION_HEADER } from './rest/headers';

/**
 * A typed REST client for one `gantry serve` replica: predict and feedback, status, readiness,
 * metrics, and the admin API (bearer token from the target). Node's global fetch, whose pool
 * keeps connections alive. Every failure is a ServingClientError — an answer that is not 2xx
 * (with the server's {"error"} message), a server that cannot be reached, a timeout, or an
 * answer that is not what the server's API promises (checked with zod).
 */

export type ServingClientErrorKind = 'http' | 'unreachable' | 'timeout' | 'aborted' | 'protocol';

export class ServingClientError extends Error {
  override name = 'ServingClientError';
  constructor(
    message: string,
    readonly kind: ServingClientErrorKind,
    readonly url: string,
    /** The HTTP status, when the server answered. */
    readonly status: number | null = null,
    /** The server's `{"error": …}` message, when it sent one. */
    readonly serverMessage: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A replica's REST base URL and the bearer token of its admin API. control/servers.ts's
 * ServerTarget is one; declared here so that serving/ depends on nothing of control/.
 */
export interface ServingEndpoint {
  url: string;
  /** Where the admin API listens when it has an address of its own (`gantry serve --admin-port`); else `url`. */
  adminUrl?: string;
  adminToken?: string;
  /** Sent as `Authorization: Bearer` with :feedback (a server with feedback tokens refuses feedback without). */
  feedbackToken?: string;
}

export interface ServingClientOptions {
  /** Longest a call may take, connection included (default 30 s). */
  timeoutMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface PredictOptions extends CallOptions {
  /** Ask for this version (`/versions/N`)… */
  version?: number;
  /** …or the version this label points at (`/labels/L`); otherwise the traffic split decides. */
  label?: string;
  /** Sent as x-gantry-client-key: the same key lands on the same version while a split stands. */
  clientKey?: string;
  /** Sent as x-request-id; the server answers with it (the id to send feedback for). */
  requestId?: string;
  /**
   * 'json' (default): TF Serving's row format, `{"instances": [[28][28][1] …]}`; 'binary': the raw
   * little-endian float32 tensor as application/octet-stream (a model with one input).
   */
  encoding?: 'json' | 'binary';
  /** The shape of one row, without the batch dimension (default Fashion-MNIST's [28, 28, 1]). */
  rowShape?: readonly number[];
}

export interface PredictAnswer {
  /** One row of output values per input row (a classifier: one probability per class). */
  predictions: number[][];
  version: number;
  requestId: string;
}

/** A raw record as the source holds it: the source's own column names, raw values (missing: null or left out). */
export type RawRecord = Record<string, string | number | boolean | null | undefined>;

/** One record's answer: a classifier's scores (in class order) and class name, or a regression's value. */
export type RecordPrediction = z.infer<typeof RecordAnswerSchema>;

export interface RecordsAnswer {
  predictions: RecordPrediction[];
  version: number;
  requestId: string;
}

export type PredictRecordsOptions = Omit<PredictOptions, 'encoding' | 'rowShape'>;

export interface VersionStatus {
  version: number;
  state: string;
  error: string | null;
}

export type FeedbackItem =
  | {
      requestId: string;
      /** The true class of each row of that request (a number when it had one row): a classifier's. */
      labels: number | number[];
    }
  | {
      requestId: string;
      /** The true value of each row of that request: a regression's (its online error). */
      values: number | number[];
    };

export type PutModelBody = z.input<typeof PutModelBodySchema>;

const FASHION_ROW_SHAPE = [28, 28, 1] as const;

const Rows = z.array(z.array(z.number()));
const PredictJsonSchema = z.object({ predictions: Rows, model_version: z.string(), request_id: z.string() });
const PredictBinarySchema = z.object({ outputs: Rows, model_version: z.string(), request_id: z.string() });
const RecordAnswerSchema = z.union([
  z.object({ scores: z.array(z.number()), class: z.string() }),
  z.object({ value: z.number() }),
]);
const PredictRecordsSchema = z.object({
  predictions: z.array(RecordAnswerSchema),
  model_version: z.string(),
  request_id: z.string(),
});
const StatusSchema = z.object({
  model_version_status: z.array(
    z.object({
      version: z.string().regex(/^\d+$/),
      state: z.string(),
      status: z.object({ error_code: z.string(), error_message: z.string() }).partial().optional(),
    }),
  ),
});
const FeedbackResultSchema = z.object({
  accepted: z.number(),
  rows: z.number(),
  unknown_request_ids: z.array(z.string()),
  rejected: z.array(z.object({ request_id: z.string(), reason: z.string() })),
});
const ReadySchema = z.object({ ready: z.boolean(), reasons: z.array(z.string()) });
const BackendSchema = z.object({ backend: z.object({ name: z.string() }).optional() });
const AdminStateSchema = z.object({
  state: StateFileSchema,
  models: z.array(z.object({ name: z.string() }).and(StatusSchema)),
});
const MetricFamiliesSchema: z.ZodType<MetricFamily[]> = z.array(
  z.object({
    name: z.string(),
    values: z.array(
      z.object({
        value: z.number().nullable(),
        metricName: z.string().optional(),
        labels: z.record(z.string(), z.union([z.string(), z.number()])),
      }),
    ),
  }),
);
const LabelsSchema = z.object({ version_labels: z.record(z.string(), z.number()) });
const ModelListSchema = z.object({
  models: z.array(
    z
      .object({ name: z.string(), version_labels: z.record(z.string(), z.number()), traffic: TrafficSchema.nullable() })
      .and(StatusSchema),
  ),
});

/** Versions in ascending order (the server lists them in the order it met them). */
function statuses(body: z.infer<typeof StatusSchema>): VersionStatus[] {
  return body.model_version_status
    .map((s) => ({
      version: Number(s.version),
      state: s.state,
      error:
        s.status?.error_code && s.status.error_code !== 'OK' ? (s.status.error_message ?? s.status.error_code) : null,
    }))
    .sort((a, b) => a.version - b.version);
}

function rowsOf(input: Float32Array | Uint8Array, rowShape: readonly number[]): number {
  const size = rowShape.reduce((a, b) => a * b, 1);
  const rows = input.length / size;
  if (!Number.isInteger(rows) || rows < 1)
    throw new RangeError(
      `predict: ${input.length} values is not a whole number of rows of ${size} (shape [${rowShape.join(', ')}])`,
    );
  return rows;
}

/** Row `r` of a flat array as the nested arrays of `dims`. */
function nested(values: Float32Array | Uint8Array, offset: number, dims: readonly number[]): unknown {
  if (dims.length === 1) return Array.from(values.subarray(offset, offset + dims[0]!));
  const stride = dims.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: dims[0]! }, (_, i) => nested(values, offset + i * stride, dims.slice(1)));
}

const enc = encodeURIComponent;

export class ServingClient {
  readonly url: string;
  readonly adminUrl: string;
  private readonly adminToken: string | undefined;
  private readonly feedbackToken: string | undefined;
  private readonly timeoutMs: number;

  constructor(target: ServingEndpoint, options: ServingClientOptions = {}) {
    this.url = target.url.replace(/\/+$/, '');
    this.adminUrl = (target.adminUrl ?? target.url).replace(/\/+$/, '');
    this.adminToken = target.adminToken;
    this.feedbackToken = target.feedbackToken;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * One predict call on raw rows (n × row size pixel values, n ≥ 1). The answering version comes
   * from the x-gantry-model-version header, the request id from x-request-id (or the body).
   */
  async predict(model: string, input: Float32Array | Uint8Array, options: PredictOptions = {}): Promise<PredictAnswer> {
    const rowShape = options.rowShape ?? FASHION_ROW_SHAPE;
    const rows = rowsOf(input, rowShape);
    let where = `/v1/models/${enc(model)}`;
    if (options.version !== undefined) where += `/versions/${options.version}`;
    else if (options.label !== undefined) where += `/labels/${enc(options.label)}`;
    const headers: Record<string, string> = {};
    if (options.clientKey !== undefined) headers[CLIENT_KEY_HEADER] = options.clientKey;
    if (options.requestId !== undefined) headers[REQUEST_ID_HEADER] = options.requestId;
    let body: string | Uint8Array;
    if (options.encoding === 'binary') {
      const floats = input instanceof Float32Array ? input : Float32Array.from(input);
      // Float32Array's bytes are the platform's order; every platform Node runs on is little-endian.
      body = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
      headers['content-type'] = 'application/octet-stream';
    } else {
      const size = rowShape.reduce((a, b) => a * b, 1);
      body = JSON.stringify({ instances: Array.from({ length: rows }, (_, r) => nested(input, r * size, rowShape)) });
      headers['content-type'] = 'application/json';
    }
    const { response, json, url } = await this.call('POST', `${where}:predict`, {
      body,
      headers,
      signal: options.signal,
    });
    const parsed =
      options.encoding === 'binary'
        ? this.parse(PredictBinarySchema, json, url)
        : this.parse(PredictJsonSchema, json, url);
    const predictions = 'outputs' in parsed ? parsed.outputs : parsed.predictions;
    if (predictions.length !== rows)
      throw new ServingClientError(
        `POST ${url}: ${predictions.length} predictions for ${rows} rows`,
        'protocol',
        url,
        response.status,
      );
    const versionHeader = response.headers.get(VERSION_HEADER) ?? parsed.model_version;
    const version = Number(versionHeader);
    if (!Number.isInteger(version) || version < 1)
      throw new ServingClientError(
        `POST ${url}: model version ${JSON.stringify(versionHeader)} is not a positive integer`,
        'protocol',
        url,
        response.status,
      );
    return { predictions, version, requestId: response.headers.get(REQUEST_ID_HEADER) ?? parsed.request_id };
  }

  /**
   * One predict call on raw records (TF Serving's row format with named inputs): the version's
   * preprocessing.json encodes them on the server. For a model published with preprocessing.
   */
  async predictRecords(
    model: string,
    records: readonly RawRecord[],
    options: PredictRecordsOptions = {},
  ): Promise<RecordsAnswer> {
    if (records.length === 0) throw new RangeError('predictRecords: no records');
    return this.predictRows(model, records, 'records', options);
  }

  /**
   * One predict call on encoded images (PNG or JPEG files' bytes, sent as TF Serving's `{"b64": …}`): the version's
   * image preprocessing.json decodes and resizes them on the server as the ingest did. Answered like records.
   */
  async predictImages(
    model: string,
    images: readonly Uint8Array[],
    options: PredictRecordsOptions = {},
  ): Promise<RecordsAnswer> {
    if (images.length === 0) throw new RangeError('predictImages: no images');
    const instances = images.map((bytes) => ({
      b64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
    }));
    return this.predictRows(model, instances, 'images', options);
  }

  /** A row-format predict whose answer is one RecordPrediction per instance. */
  private async predictRows(
    model: string,
    instances: readonly unknown[],
    what: string,
    options: PredictRecordsOptions,
  ): Promise<RecordsAnswer> {
    let where = `/v1/models/${enc(model)}`;
    if (options.version !== undefined) where += `/versions/${options.version}`;
    else if (options.label !== undefined) where += `/labels/${enc(options.label)}`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (options.clientKey !== undefined) headers[CLIENT_KEY_HEADER] = options.clientKey;
    if (options.requestId !== undefined) headers[REQUEST_ID_HEADER] = options.requestId;
    const { response, json, url } = await this.call('POST', `${where}:predict`, {
      body: JSON.stringify({ instances }),
      headers,
      signal: options.signal,
    });
    const parsed = this.parse(PredictRecordsSchema, json, url);
    if (parsed.predictions.length !== instances.length)
      throw new ServingClientError(
        `POST ${url}: ${parsed.predictions.length} predictions for ${instances.length} ${what}`,
        'protocol',
        url,
        response.status,
      );
    const version = Number(response.headers.get(VERSION_HEADER) ?? parsed.model_version);
    if (!Number.isInteger(version) || version < 1)
      throw new ServingClientError(`POST ${url}: no model version in the answer`, 'protocol', url, response.status);
    return {
      predictions: parsed.predictions,
      version,
      requestId: response.headers.get(REQUEST_ID_HEADER) ?? parsed.request_id,
    };
  }

  /** The true labels of earlier predictions, by request id (`:feedback`). */
  async feedback(model: string, items: readonly FeedbackItem[], options: CallOptions = {}): Promise<FeedbackResult> {
    const body = {
      feedback: items.map((i) =>
        'labels' in i ? { request_id: i.requestId, labels: i.labels } : { request_id: i.requestId, values: i.values },
      ),
    };
    const { json, url } = await this.call('POST', `/v1/models/${enc(model)}:feedback`, {
      json: body,
      signal: options.signal,
      headers: this.feedbackToken ? { authorization: `Bearer ${this.feedbackToken}` } : undefined,
      feedback: true,
    });
    return this.parse(FeedbackResultSchema, json, url);
  }

  /** Every version the server knows of a model, with its state (GET /v1/models/NAME). */
  async modelStatus(model: string, options: CallOptions = {}): Promise<VersionStatus[]> {
    const { json, url } = await this.call('GET', `/v1/models/${enc(model)}`, { signal: options.signal });
    return statuses(this.parse(StatusSchema, json, url));
  }

  /** Every model served, with its labels, traffic policy and versions (GET /v1/models). */
  async listModels(
    options: CallOptions = {},
  ): Promise<
    { name: string; versionLabels: Record<string, number>; traffic: Traffic | null; versions: VersionStatus[] }[]
  > {
    const { json, url } = await this.call('GET', '/v1/models', { signal: options.signal });
    return this.parse(ModelListSchema, json, url).models.map((m) => ({
      name: m.name,
      versionLabels: m.version_labels,
      traffic: m.traffic,
      versions: statuses(m),
    }));
  }

  /** The TensorFlow.js backend the server predicts on (GET /v1/models reports it beside the models). */
  async backendName(options: CallOptions = {}): Promise<string | null> {
    const { json, url } = await this.call('GET', '/v1/models', { signal: options.signal });
    return this.parse(BackendSchema, json, url).backend?.name ?? null;
  }

  /**
   * /readyz: whether the first load finished and every model has an AVAILABLE version (a 503 is an
   * answer, not an error).
   */
  async ready(options: CallOptions = {}): Promise<{ ready: boolean; reasons: string[] }> {
    const { json, url } = await this.call('GET', '/readyz', { signal: options.signal, accept: [503] });
    return this.parse(ReadySchema, json, url);
  }

  /** The server's metrics as data, prom-client's JSON (serving/metrics-snapshot.ts reads a model's counters). */
  async metrics(options: CallOptions = {}): Promise<MetricFamily[]> {
    const { json, url } = await this.call('GET', '/monitoring/metrics.json', { signal: options.signal });
    return this.parse(MetricFamiliesSchema, json, url);
  }

  /** The server's Prometheus text, as a scraper reads it. */
  async metricsText(options: CallOptions = {}): Promise<string> {
    const { text } = await this.call('GET', '/monitoring/prometheus/metrics', { signal: options.signal });
    return text;
  }

  // ---- admin API (needs the target's admin token) ----

  /** The server's desired state (explicit models, removed ones, traffic) and each model's versions. */
  async adminState(
    options: CallOptions = {},
  ): Promise<{ state: ServingStateData; models: { name: string; versions: VersionStatus[] }[] }> {
    const { json, url } = await this.call('GET', '/v1/admin/state', { admin: true, signal: options.signal });
    const parsed = this.parse(AdminStateSchema, json, url);
    return { state: parsed.state, models: parsed.models.map((m) => ({ name: m.name, versions: statuses(m) })) };
  }

  /** Adds or replaces one model's config; when it returns, the model is loaded (or its failure is in `versions`). */
  async putModel(
    model: string,
    body: PutModelBody = {},
    options: CallOptions = {},
  ): Promise<{ config: ModelConfig; versions: VersionStatus[] }> {
    const { json, url } = await this.call('PUT', `/v1/admin/models/${enc(model)}`, {
      admin: true,
      json: body,
      signal: options.signal,
    });
    const parsed = this.parse(z.object({ config: ModelConfigSchema }).and(StatusSchema), json, url);
    return { config: parsed.config, versions: statuses(parsed) };
  }

  async removeModel(model: string, options: CallOptions = {}): Promise<void> {
    await this.call('DELETE', `/v1/admin/models/${enc(model)}`, { admin: true, signal: options.signal });
  }

  /** Retries failed versions and re-reads the model's folder now. */
  async reloadModel(model: string, options: CallOptions = {}): Promise<VersionStatus[]> {
    const { json, url } = await this.call('POST', `/v1/admin/models/${enc(model)}/reload`, {
      admin: true,
      json: {},
      signal: options.signal,
    });
    return statuses(this.parse(StatusSchema, json, url));
  }

  /** Points a label at a version (which must be AVAILABLE); returns the model's labels. */
  async setLabel(
    model: string,
    label: string,
    version: number,
    options: CallOptions = {},
  ): Promise<Record<string, number>> {
    const { json, url } = await this.call('PUT', `/v1/admin/models/${enc(model)}/labels/${enc(label)}`, {
      admin: true,
      json: { version },
      signal: options.signal,
    });
    return this.parse(LabelsSchema, json, url).version_labels;
  }

  async deleteLabel(model: string, label: string, options: CallOptions = {}): Promise<Record<string, number>> {
    const { json, url } = await this.call('DELETE', `/v1/admin/models/${enc(model)}/labels/${enc(label)}`, {
      admin: true,
      signal: options.signal,
    });
    return this.parse(LabelsSchema, json, url).version_labels;
  }

  /** Sets the model's traffic split and/or shadow (every target must be AVAILABLE). */
  async setTraffic(model: string, traffic: z.input<typeof TrafficSchema>, options: CallOptions = {}): Promise<Traffic> {
    const { json, url } = await this.call('PUT', `/v1/admin/models/${enc(model)}/traffic`, {
      admin: true,
      json: traffic,
      signal: options.signal,
    });
    return this.parse(z.object({ traffic: TrafficSchema }), json, url).traffic;
  }

  /** Back to the default: the latest AVAILABLE version answers, no shadow. */
  async clearTraffic(model: string, options: CallOptions = {}): Promise<void> {
    await this.call('DELETE', `/v1/admin/models/${enc(model)}/traffic`, { admin: true, signal: options.signal });
  }

  // ---- plumbing ----

  private parse<T extends z.ZodType>(schema: T, json: unknown, url: string): z.output<T> {
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new ServingClientError(`${url}: unexpected answer: ${describeIssues(parsed.error)}`, 'protocol', url);
    }
    return parsed.data;
  }

  private async call(
    method: string,
    path: string,
    options: {
      json?: unknown;
      body?: string | Uint8Array;
      headers?: Record<string, string>;
      admin?: boolean;
      feedback?: boolean;
      signal?: AbortSignal;
      accept?: number[];
    },
  ): Promise<{ response: Response; text: string; json: unknown; url: string }> {
    const url = `${options.admin ? this.adminUrl : this.url}${path}`;
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    let body = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    }
    if (options.admin && this.adminToken) headers.authorization = `Bearer ${this.adminToken}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, { method, headers, body, signal });
      text = await response.text();
    } catch (error) {
      throw this.failure(method, url, error, timeout, options.signal);
    }
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!response.ok && !options.accept?.includes(response.status)) {
      const serverMessage =
        typeof (json as { error?: unknown } | undefined)?.error === 'string' ? (json as { error: string }).error : null;
      let detail = serverMessage ?? (text.trim().slice(0, 200) || response.statusText);
      if (options.feedback && !this.feedbackToken && (response.status === 401 || response.status === 403))
        detail +=
          ` (this client has no feedback token for ${this.url}: ` +
          'GANTRY_FEEDBACK_TOKEN, or feedbackToken in servers.json)';
      if (options.admin && !this.adminToken && (response.status === 401 || response.status === 403))
        detail +=
          ` (this client has no admin token for ${this.url}: ` +
          'GANTRY_SERVE_ADMIN_TOKEN, or adminToken in servers.json)';
      throw new ServingClientError(
        `${method} ${url}: ${response.status} ${detail}`,
        'http',
        url,
        response.status,
        serverMessage,
      );
    }
    return { response, text, json, url };
  }

  private failure(
    method: string,
    url: string,
    error: unknown,
    timeout: AbortSignal,
    caller: AbortSignal | undefined,
  ): ServingClientError {
    if (caller?.aborted)
      return new ServingClientError(`${method} ${url}: aborted`, 'aborted', url, null, null, { cause: error });
    if (timeout.aborted)
      return new ServingClientError(
        `${method} ${url}: no answer within ${this.timeoutMs} ms`,
        'timeout',
        url,
        null,
        null,
        { cause: error },
      );
    // fetch says "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, a reset socket) is its cause.
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    return new ServingClientError(
      `server unreachable: ${method} ${url} failed (${reason})`,
      'unreachable',
      url,
      null,
      null,
      { cause: error },
    );
  }
}
