// The package entry: the public API of every layer, and the model's convenience methods. The engine
// (engine/model.ts) knows nothing of decoding, likelihoods or the learned sampler; the methods below
// attach them to DiffusionLM here, at the top, so `model.generate(...)` reads as users expect while
// the layers below import only downward.
import { generate, type GenerateOptions, type GenerateResult } from './decoding/sampler.js';
import { DEFAULT_HEAD_LR, samplerHeadOf, setSamplerHead, ThresholdHead } from './decoding/threshold-head.js';
import { DiffusionLM, type BackwardOption } from './engine/model.js';
import { tokenLogProbs, type CompletionBatch, type EstimatorOptions, type EstimatorPlan } from './likelihood/estimators.js';
import { maskedDiffusionLoss, type MaskedDiffusionInput, type MaskedDiffusionResult } from './likelihood/masked-diffusion.js';
import { policyLoss, type PolicyLossInput, type PolicyLossResult } from './likelihood/policy-loss.js';

declare module './engine/model.js' {
  interface DiffusionLM {
    /**
     * Decodes a completion for every prompt (different lengths allowed: prompts are left-padded with
     * their positions shifted, so each sees what it would alone), with the given strategy; see
     * GenerateOptions. Returns the tokens, NFE per sequence and the trajectory.
     */
    generate(prompts: Int32Array[], options: GenerateOptions): Promise<GenerateResult>;
    /**
     * Per-token log-likelihood estimates (batch x genLength) of completions: 'mean-field' (d1),
     * 'two-stage' (DiFFPO), 'trajectory' (exact, TraceRL) or 'elbo' (LLaDA's Monte Carlo bound), with
     * the plan of random choices to reuse for the policy loss.
     */
    tokenLogProbs(batch: CompletionBatch, options: EstimatorOptions): Promise<{ logProbs: Float32Array; plan: EstimatorPlan }>;
    /** The RL objective (clipped ratio, truncated importance weight, k3 KL); with backward, its gradient. */
    policyLoss(input: PolicyLossInput, plan: EstimatorPlan, options?: { backward?: boolean; maxTokensPerForward?: number; signal?: AbortSignal }): Promise<PolicyLossResult>;
    /** LLaDA's masked-diffusion loss, 'pretrain' or 'sft' normalisation (see MaskedDiffusionInput). */
    maskedDiffusionLoss(input: MaskedDiffusionInput, options?: BackwardOption): Promise<MaskedDiffusionResult>;
    /**
     * DiFFPO's learned sampler travelling with the weights: saved as `diffpo.` tensors in
     * model.safetensors, loaded by fromPretrained, used by `strategy: { kind: 'learned' }`.
     */
    samplerHead: ThresholdHead | null;
  }
}

Object.assign(DiffusionLM.prototype, {
  generate(this: DiffusionLM, prompts: Int32Array[], options: GenerateOptions) {
    return generate(this, prompts, options);
  },
  tokenLogProbs(this: DiffusionLM, batch: CompletionBatch, options: EstimatorOptions) {
    return tokenLogProbs(this, batch, options);
  },
  policyLoss(this: DiffusionLM, input: PolicyLossInput, plan: EstimatorPlan, options?: { backward?: boolean; maxTokensPerForward?: number; signal?: AbortSignal }) {
    return policyLoss(this, input, plan, options);
  },
  maskedDiffusionLoss(this: DiffusionLM, input: MaskedDiffusionInput, options?: BackwardOption) {
    return maskedDiffusionLoss(this, input, options);
  },
});
Object.defineProperty(DiffusionLM.prototype, 'samplerHead', {
  get(this: DiffusionLM) {
    return samplerHeadOf(this);
  },
  set(this: DiffusionLM, head: ThresholdHead | null) {
    setSamplerHead(this, head);
  },
  configurable: true,
});

// core
export { AbortError, BackendUnavailableError, CheckpointError, CollectiveError, ConfigError, DiffpoError, DisposedError, InvalidArgumentError, NonFiniteError } from './core/errors.js';
export { defaultsOf, type OptionSpec } from './core/options.js';
export { Rng } from './core/rng.js';
export { deriveSeed, type SeedPurpose } from './core/seeds.js';
// engine
export { backendStatus, type BackendName, type BackendStatus } from './engine/backend.js';
export { ALL_REDUCE_BUCKET_BYTES, cudaDevice, gatherRows, launchedLocalRank, launchedLocalSize, launchedSize, shardRange, SINGLE_PROCESS, worldFromEnvironment, type Collective, type SequenceRange } from './engine/collective.js';
export { EXTRA_TENSOR_PREFIX, type ExtraTensor } from './engine/checkpoint.js';
export { CONFIG_DEFAULTS, PRESETS, presetConfig, resolveConfig, type ConfigInput, type LLaDAConfig, type PresetName } from './engine/config.js';
export { DiffusionLM };
export { parameterCount, tensorLayout } from './engine/model.js';
export { fitBatch, loraParameterCount, memoryPlan, type MemoryPlan, type MemoryPlanOptions } from './engine/memory-plan.js';
export { D1_LORA_TARGETS, LORA_TARGETS, type LoraConfig, type LoraOptions, type LoraTarget } from './engine/lora.js';
export type { AdamWUpdate, BackwardOption, CreateOptions, DecoderOptions, DecoderSession, ExtraTensorSource, ForwardOptions, LoadOptions, ModelOptions, OptimizerMoments, SelectedLogProbsInput, WeightsDtype } from './engine/model.js';
export { buildSafetensorsHeader, readSafetensorsHeader, type SafetensorsDtype, type SafetensorsHeader, type TensorEntry } from './engine/safetensors.js';
// tasks
export * from './tasks/index.js';
export { encodePrompt, encodePrompts, encodeSftBatch, encodeSftPairs, responseLengthOf, type EncodedBatch } from './tasks/encode.js';
export { CharTokenizer, checkTokenizerFits, completionText, HfTokenizer, loadTokenizer, SPECIAL_TOKENS, TASK_ALPHABET, type HfTokenizerFiles, type TextTokenizer } from './tasks/tokenizer.js';
export { trainByteLevelBpe, type AddedTokenSpec } from './tasks/byte-level-bpe.js';
// decoding
export { evaluate, type EvaluateOptions, type EvaluateResult } from './decoding/evaluate.js';
export { generate, samplerOptions, type GenerateOptions, type GenerateResult, type StepEvent } from './decoding/sampler.js';
export { TextDiffusion, type TextGenerateOptions, type TextGeneration, type TextPrompt } from './decoding/text-diffusion.js';
export { LLADA_8B_DIR, writeLladaFolder, type LladaFolderOptions } from './app/llada-folder.js';
export { DEFAULT_THRESHOLD, ONE_TOKEN_PER_STEP, strategyForSequences, strategyLabel, SWEEP_THRESHOLDS, thresholdStrategy, type DecodingStrategy } from './decoding/strategy.js';
export { DEFAULT_HEAD_LR, ThresholdHead };
export { CONFIDENCE_FEATURES, MIN_FEATURE_STD, type HeadFeatures } from './decoding/threshold-head.js';
// likelihood
export { passBatches, planEstimate, runPlan, tokenLogProbs, type BatchShard, type CompletionBatch, type Estimator, type EstimatorOptions, type EstimatorPlan, type PassBatch } from './likelihood/estimators.js';
export { maskedDiffusionLoss, type MaskedDiffusionInput, type MaskedDiffusionResult } from './likelihood/masked-diffusion.js';
export { policyLoss, policyObjective, type PolicyLossInput, type PolicyLossResult } from './likelihood/policy-loss.js';
// training
export { ADVANTAGE_STD_EPS, DIFFPO_DEFAULTS, DiffpoTrainer, HEAD_CALIBRATION_PROMPTS, groupAdvantages, SAMPLER_DEFAULTS, samplerRewards, zeroVarianceFraction, type DiffpoDefaults, type SamplerDefaults, type DiffpoOptions, type DiffpoRollout, type DiffpoStepInfo, type RewardFn, type RlMethod } from './training/diffpo.js';
export { commitCheckpoint, openCheckpoint, truncateStepLog, MANIFEST as CHECKPOINT_MANIFEST } from './training/checkpoint-set.js';
export { loadModelFolder, readModelFolder, writeModelFolder, type ModelFolder } from './training/model-folder.js';
export { AdamW, type AdamWOptions, type AdamWStepResult } from './training/optimizer.js';
export { COSINE_FLOOR, scheduledLr, type LrSchedule } from './training/schedule.js';
export { SFT_DEFAULTS, SftTrainer, type SftDefaults, type SftOptions, type SftStepInfo } from './training/sft.js';
// application
export { budgetSweep, meanStd, paretoCompare, paretoFront, paretoHull, paretoSvg, paretoSweep, type ParetoComparison, type ParetoPoint } from './app/pareto.js';
export { formatSeconds, Progress } from './app/progress.js';
export { runReport, stepsSvg, type HeadChoices, type RunReportInput } from './app/report.js';
export { meanSweep, readRun, runSetName, summarizeRuns, type RunRecord, type RunReport, type RunResult, type RunSet, type RunSetRow, type SeedStat, type Split } from './app/run-sets.js';
