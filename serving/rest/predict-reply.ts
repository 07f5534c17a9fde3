import type { FastifyReply } from 'fastify';
import type { Answer } from '../inference';
import { recordAnswers, type RecordAnswer, type RecordOutputs } from '../records';
import { takesExamples } from '../signature';
import { toColumnar, toPredictions } from '../tensors';
import { exampleOutputs } from '../examples';
import { CLIENT_REQUEST_ID_HEADER, REQUEST_ID_HEADER, VERSION_HEADER } from './headers';

/**
 * The one reply builder for model calls. TF Serving's JSON shapes: `predictions` (row format: the
 * request had `instances`), `outputs` (columnar: it had `inputs`, or it was a binary body that did
 * not ask for protobuf back) or :classify's `results`; a request of raw records (or of encoded images, to an image
 * version) is answered per record with `{"scores": […], "class": "…"}` (a classifier) or `{"value": …}` (a
 * regression); each names the version that answered and the request id, in the body and in the headers.
 */

export type ReplyFormat = 'row' | 'columnar' | 'classify' | 'regress' | 'records-row' | 'records-columnar';

/** The answer's version and request id as headers (a protobuf answer has them only there). */
export function answerHeaders(reply: FastifyReply, answer: Answer): void {
  reply.header(VERSION_HEADER, String(answer.version)).header(REQUEST_ID_HEADER, answer.requestId);
  if (answer.clientRequestId !== undefined) reply.header(CLIENT_REQUEST_ID_HEADER, answer.clientRequestId);
}

/** The output keys, in the order of the answer's outputs. */
export function outputKeys(answer: Answer): string[] {
  return answer.signature.outputs.map((s) => s.key);
}

/** A SavedModel's own output dtypes (DT_BOOL answers true/false in JSON, as TF Serving's does). */
function outputDTypes(answer: Answer): (string | undefined)[] {
  return answer.signature.outputs.map((s) => s.tfDType);
}

/** Sets the headers and returns the JSON body. */
export function answerReply(reply: FastifyReply, answer: Answer, format: ReplyFormat) {
  answerHeaders(reply, answer);
  // The answer's own key first, then these: the order TF Serving's clients (and our tests) see.
  const ids = { model_version: String(answer.version), request_id: answer.requestId };
  switch (format) {
    case 'row':
      return { predictions: toPredictions(answer.outputs, outputKeys(answer), outputDTypes(answer)), ...ids };
    case 'columnar':
      return { outputs: toColumnar(answer.outputs, outputKeys(answer), outputDTypes(answer)), ...ids };
    case 'classify':
      return {
        results: takesExamples(answer.signature) ? exampleClassResults(answer) : classifyResults(answer),
        ...ids,
      };
    case 'regress':
      return { results: regressResults(answer), ...ids };
    case 'records-row':
      return { predictions: recordAnswers(answeredAs(answer), answer.outputs[0]!), ...ids };
    case 'records-columnar':
      return { outputs: recordColumns(recordAnswers(answeredAs(answer), answer.outputs[0]!)), ...ids };
  }
}

/** What a records or images request is answered with (a class per row, or a value). */
function answeredAs(answer: Answer): { outputs: RecordOutputs } {
  return (answer.signature.records ?? answer.signature.images)!;
}

/** Records' answers in the columnar form: `{"scores": [[…]], "class": […]}` or `{"value": […]}`. */
function recordColumns(answers: RecordAnswer[]): Record<string, unknown[]> {
  if (answers.length > 0 && 'value' in answers[0]!)
    return { value: answers.map((a) => (a as { value: number }).value) };
  const rows = answers as { scores: number[]; class: string }[];
  return { scores: rows.map((a) => a.scores), class: rows.map((a) => a.class) };
}

/**
 * A classify signature's answer per example: [label, score] pairs from its `classes` (DT_STRING [-1, K]) and
 * `scores` ([-1, K]) outputs, as TF Serving gives them; a signature with only one of them gives "" or 0 for the
 * other.
 */
function exampleClassResults(answer: Answer): [string, number][][] {
  const { classes, scores } = exampleOutputs(answer.signature, answer.outputs);
  const rows = (classes ?? scores)?.shape[0] ?? 0;
  const k = (classes ?? scores)?.shape[1] ?? 1;
  return Array.from({ length: rows }, (_, r) =>
    Array.from({ length: k }, (_, c): [string, number] => [
      classes?.strings ? Buffer.from(classes.strings[r * k + c]!).toString() : '',
      scores ? scores.data[r * k + c]! : 0,
    ]),
  );
}

/** A regress signature's answer: one value per example, from its `outputs` tensor ([-1] or [-1, 1]). */
function regressResults(answer: Answer): number[] {
  const outputs = exampleOutputs(answer.signature, answer.outputs).outputs ?? answer.outputs[0]!;
  return Array.from(outputs.data);
}

/** Per row, [label, score] for every class, in the model's class order. */
function classifyResults(answer: Answer): [string, number][][] {
  const labels = answer.signature.classLabels!;
  const scores = answer.outputs[0]!;
  const k = labels.length;
  return Array.from({ length: scores.shape[0]! }, (_, r) =>
    labels.map((label, c): [string, number] => [label, scores.data[r * k + c]!]),
  );
}
