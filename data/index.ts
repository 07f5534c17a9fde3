// The public face of data/: what activities, trainers and the CLI import.
export { DatasetError } from './errors';
export { IDX_MAGIC, parseIdx, readIdxFile, readMaybeGzipped, resolveIdxFile, type IdxArray, type IdxKind } from './idx';
export {
  DEFAULT_FASHION_MNIST_DIR,
  DEFAULT_SOURCE_READ_OPTIONS,
  FASHION_MNIST_CLASS_NAMES,
  dataSourceNames,
  findDataSource,
  getDataSource,
  ImageShapeSchema,
  type DataSource,
  type ImageShape,
  type RawDataset,
  type RawSplit,
  type SourceReadOptions,
} from './sources';
export { computeStatistics, DatasetStatisticsSchema, type DatasetStatistics } from './statistics';
export {
  compareStatistics,
  DEFAULT_DRIFT_THRESHOLDS,
  DriftMetricsSchema,
  DriftReportSchema,
  DriftThresholdsSchema,
  jensenShannonDivergence,
  StatisticsBaselineSchema,
  type DriftMetrics,
  type DriftReport,
  type DriftThresholds,
  type StatisticsBaseline,
} from './drift';
export {
  holdOutTest,
  holdOutTestSplit,
  sampleIndices,
  seededPermutation,
  SPLIT_NAMES,
  SplitNameSchema,
  splitTrainValidation,
  takeExamples,
  type SplitIndices,
  type SplitName,
  type SplitOptions,
} from './split';
export {
  DEFAULT_SHARD_SIZE,
  datasetPrefix,
  exampleBytesOf,
  loadSplit,
  ShardRefSchema,
  SplitRefSchema,
  writeSplitShards,
  type LoadedSplit,
  type ShardRef,
  type SplitLayout,
  type SplitRef,
  type WriteSplitInput,
} from './shards';
export {
  DatasetManifestSchema,
  DatasetParametersSchema,
  datasetFingerprint,
  DatasetRefSchema,
  ingestDataset,
  IngestOptionsSchema,
  parseIngestOptions,
  StatisticsRecordSchema,
  type DatasetManifest,
  type DatasetParameters,
  type DatasetRef,
  type IngestOptions,
  type IngestOptionsInput,
  type StatisticsRecord,
} from './ingest';
