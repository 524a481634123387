from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    D_TYPE_UNSPECIFIED: _ClassVar[DType]
    D_TYPE_FLOAT32: _ClassVar[DType]
    D_TYPE_FLOAT64: _ClassVar[DType]
    D_TYPE_INT32: _ClassVar[DType]
    D_TYPE_INT64: _ClassVar[DType]

class Similarity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIMILARITY_UNSPECIFIED: _ClassVar[Similarity]
    SIMILARITY_COSINE: _ClassVar[Similarity]
    SIMILARITY_EUCLIDEAN: _ClassVar[Similarity]

class OutputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_KIND_UNSPECIFIED: _ClassVar[OutputKind]
    OUTPUT_KIND_PROBABILITIES: _ClassVar[OutputKind]
    OUTPUT_KIND_LOGITS: _ClassVar[OutputKind]
D_TYPE_UNSPECIFIED: DType
D_TYPE_FLOAT32: DType
D_TYPE_FLOAT64: DType
D_TYPE_INT32: DType
D_TYPE_INT64: DType
SIMILARITY_UNSPECIFIED: Similarity
SIMILARITY_COSINE: Similarity
SIMILARITY_EUCLIDEAN: Similarity
OUTPUT_KIND_UNSPECIFIED: OutputKind
OUTPUT_KIND_PROBABILITIES: OutputKind
OUTPUT_KIND_LOGITS: OutputKind

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data", "shared_memory")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    shared_memory: SharedMemoryRef
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., shared_memory: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class SharedMemoryRef(_message.Message):
    __slots__ = ("name", "offset", "socket")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    socket: str
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., socket: _Optional[str] = ...) -> None: ...

class Pool(_message.Message):
    __slots__ = ("probabilities", "logits", "embeddings")
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    probabilities: Tensor
    logits: Tensor
    embeddings: Tensor
    def __init__(self, probabilities: _Optional[_Union[Tensor, _Mapping]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., embeddings: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class LabeledSet(_message.Message):
    __slots__ = ("embeddings", "labels")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    embeddings: Tensor
    labels: Tensor
    def __init__(self, embeddings: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ValidationSet(_message.Message):
    __slots__ = ("probabilities", "logits", "labels", "embeddings")
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    probabilities: Tensor
    logits: Tensor
    labels: Tensor
    embeddings: Tensor
    def __init__(self, probabilities: _Optional[_Union[Tensor, _Mapping]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., embeddings: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class UncertaintyStrategy(_message.Message):
    __slots__ = ("method", "n_configurations", "max_target_samples")
    class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        METHOD_UNSPECIFIED: _ClassVar[UncertaintyStrategy.Method]
        METHOD_LEAST_CONFIDENCE: _ClassVar[UncertaintyStrategy.Method]
        METHOD_MARGIN: _ClassVar[UncertaintyStrategy.Method]
        METHOD_ENTROPY: _ClassVar[UncertaintyStrategy.Method]
        METHOD_RATIO_OF_CONFIDENCE: _ClassVar[UncertaintyStrategy.Method]
        METHOD_BALD: _ClassVar[UncertaintyStrategy.Method]
        METHOD_VARIATION_RATIOS: _ClassVar[UncertaintyStrategy.Method]
        METHOD_MEAN_STD: _ClassVar[UncertaintyStrategy.Method]
        METHOD_VOTE_ENTROPY: _ClassVar[UncertaintyStrategy.Method]
        METHOD_CONSENSUS_ENTROPY: _ClassVar[UncertaintyStrategy.Method]
        METHOD_KL_MEAN: _ClassVar[UncertaintyStrategy.Method]
        METHOD_KL_MAX: _ClassVar[UncertaintyStrategy.Method]
        METHOD_BATCHBALD: _ClassVar[UncertaintyStrategy.Method]
        METHOD_EPIG: _ClassVar[UncertaintyStrategy.Method]
    METHOD_UNSPECIFIED: UncertaintyStrategy.Method
    METHOD_LEAST_CONFIDENCE: UncertaintyStrategy.Method
    METHOD_MARGIN: UncertaintyStrategy.Method
    METHOD_ENTROPY: UncertaintyStrategy.Method
    METHOD_RATIO_OF_CONFIDENCE: UncertaintyStrategy.Method
    METHOD_BALD: UncertaintyStrategy.Method
    METHOD_VARIATION_RATIOS: UncertaintyStrategy.Method
    METHOD_MEAN_STD: UncertaintyStrategy.Method
    METHOD_VOTE_ENTROPY: UncertaintyStrategy.Method
    METHOD_CONSENSUS_ENTROPY: UncertaintyStrategy.Method
    METHOD_KL_MEAN: UncertaintyStrategy.Method
    METHOD_KL_MAX: UncertaintyStrategy.Method
    METHOD_BATCHBALD: UncertaintyStrategy.Method
    METHOD_EPIG: UncertaintyStrategy.Method
    METHOD_FIELD_NUMBER: _ClassVar[int]
    N_CONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_TARGET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    method: UncertaintyStrategy.Method
    n_configurations: int
    max_target_samples: int
    def __init__(self, method: _Optional[_Union[UncertaintyStrategy.Method, str]] = ..., n_configurations: _Optional[int] = ..., max_target_samples: _Optional[int] = ...) -> None: ...

class DiversityStrategy(_message.Message):
    __slots__ = ("method", "typicality_neighbors", "radius", "n_local_trials", "angular_distance", "density_similarity", "kcenter_projection")
    class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        METHOD_UNSPECIFIED: _ClassVar[DiversityStrategy.Method]
        METHOD_KCENTER: _ClassVar[DiversityStrategy.Method]
        METHOD_KMEANS: _ClassVar[DiversityStrategy.Method]
        METHOD_KMEANS_PLUSPLUS: _ClassVar[DiversityStrategy.Method]
        METHOD_TYPICLUST: _ClassVar[DiversityStrategy.Method]
        METHOD_PROBCOVER: _ClassVar[DiversityStrategy.Method]
        METHOD_INFORMATION_DENSITY: _ClassVar[DiversityStrategy.Method]
        METHOD_RANDOM: _ClassVar[DiversityStrategy.Method]
        METHOD_LIGHTWEIGHT_CORESET: _ClassVar[DiversityStrategy.Method]
    METHOD_UNSPECIFIED: DiversityStrategy.Method
    METHOD_KCENTER: DiversityStrategy.Method
    METHOD_KMEANS: DiversityStrategy.Method
    METHOD_KMEANS_PLUSPLUS: DiversityStrategy.Method
    METHOD_TYPICLUST: DiversityStrategy.Method
    METHOD_PROBCOVER: DiversityStrategy.Method
    METHOD_INFORMATION_DENSITY: DiversityStrategy.Method
    METHOD_RANDOM: DiversityStrategy.Method
    METHOD_LIGHTWEIGHT_CORESET: DiversityStrategy.Method
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TYPICALITY_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    N_LOCAL_TRIALS_FIELD_NUMBER: _ClassVar[int]
    ANGULAR_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    DENSITY_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    KCENTER_PROJECTION_FIELD_NUMBER: _ClassVar[int]
    method: DiversityStrategy.Method
    typicality_neighbors: int
    radius: float
    n_local_trials: int
    angular_distance: bool
    density_similarity: Similarity
    kcenter_projection: int
    def __init__(self, method: _Optional[_Union[DiversityStrategy.Method, str]] = ..., typicality_neighbors: _Optional[int] = ..., radius: _Optional[float] = ..., n_local_trials: _Optional[int] = ..., angular_distance: _Optional[bool] = ..., density_similarity: _Optional[_Union[Similarity, str]] = ..., kcenter_projection: _Optional[int] = ...) -> None: ...

class CredibilityStrategy(_message.Message):
    __slots__ = ("method", "n_neighbors", "n_clusters", "weakness", "class_error", "missing_class_weakness", "nonconformity", "class_conditional", "density_alpha")
    class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        METHOD_UNSPECIFIED: _ClassVar[CredibilityStrategy.Method]
        METHOD_VALIDATION_KNN: _ClassVar[CredibilityStrategy.Method]
        METHOD_WEAK_CLUSTERS: _ClassVar[CredibilityStrategy.Method]
        METHOD_CLASS_WEAKNESS: _ClassVar[CredibilityStrategy.Method]
        METHOD_CONFORMAL: _ClassVar[CredibilityStrategy.Method]
        METHOD_GRADIENT_ALIGNMENT: _ClassVar[CredibilityStrategy.Method]
        METHOD_TRUST_SCORE: _ClassVar[CredibilityStrategy.Method]
    METHOD_UNSPECIFIED: CredibilityStrategy.Method
    METHOD_VALIDATION_KNN: CredibilityStrategy.Method
    METHOD_WEAK_CLUSTERS: CredibilityStrategy.Method
    METHOD_CLASS_WEAKNESS: CredibilityStrategy.Method
    METHOD_CONFORMAL: CredibilityStrategy.Method
    METHOD_GRADIENT_ALIGNMENT: CredibilityStrategy.Method
    METHOD_TRUST_SCORE: CredibilityStrategy.Method
    class Weakness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WEAKNESS_UNSPECIFIED: _ClassVar[CredibilityStrategy.Weakness]
        WEAKNESS_LOSS: _ClassVar[CredibilityStrategy.Weakness]
        WEAKNESS_ERROR_RATE: _ClassVar[CredibilityStrategy.Weakness]
    WEAKNESS_UNSPECIFIED: CredibilityStrategy.Weakness
    WEAKNESS_LOSS: CredibilityStrategy.Weakness
    WEAKNESS_ERROR_RATE: CredibilityStrategy.Weakness
    class ClassError(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CLASS_ERROR_UNSPECIFIED: _ClassVar[CredibilityStrategy.ClassError]
        CLASS_ERROR_ONE_MINUS_PRECISION: _ClassVar[CredibilityStrategy.ClassError]
        CLASS_ERROR_ONE_MINUS_RECALL: _ClassVar[CredibilityStrategy.ClassError]
    CLASS_ERROR_UNSPECIFIED: CredibilityStrategy.ClassError
    CLASS_ERROR_ONE_MINUS_PRECISION: CredibilityStrategy.ClassError
    CLASS_ERROR_ONE_MINUS_RECALL: CredibilityStrategy.ClassError
    class Nonconformity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONCONFORMITY_UNSPECIFIED: _ClassVar[CredibilityStrategy.Nonconformity]
        NONCONFORMITY_ONE_MINUS_PROBABILITY: _ClassVar[CredibilityStrategy.Nonconformity]
        NONCONFORMITY_APS: _ClassVar[CredibilityStrategy.Nonconformity]
        NONCONFORMITY_APS_RANDOMIZED: _ClassVar[CredibilityStrategy.Nonconformity]
    NONCONFORMITY_UNSPECIFIED: CredibilityStrategy.Nonconformity
    NONCONFORMITY_ONE_MINUS_PROBABILITY: CredibilityStrategy.Nonconformity
    NONCONFORMITY_APS: CredibilityStrategy.Nonconformity
    NONCONFORMITY_APS_RANDOMIZED: CredibilityStrategy.Nonconformity
    METHOD_FIELD_NUMBER: _ClassVar[int]
    N_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    N_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    WEAKNESS_FIELD_NUMBER: _ClassVar[int]
    CLASS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MISSING_CLASS_WEAKNESS_FIELD_NUMBER: _ClassVar[int]
    NONCONFORMITY_FIELD_NUMBER: _ClassVar[int]
    CLASS_CONDITIONAL_FIELD_NUMBER: _ClassVar[int]
    DENSITY_ALPHA_FIELD_NUMBER: _ClassVar[int]
    method: CredibilityStrategy.Method
    n_neighbors: int
    n_clusters: int
    weakness: CredibilityStrategy.Weakness
    class_error: CredibilityStrategy.ClassError
    missing_class_weakness: float
    nonconformity: CredibilityStrategy.Nonconformity
    class_conditional: bool
    density_alpha: float
    def __init__(self, method: _Optional[_Union[CredibilityStrategy.Method, str]] = ..., n_neighbors: _Optional[int] = ..., n_clusters: _Optional[int] = ..., weakness: _Optional[_Union[CredibilityStrategy.Weakness, str]] = ..., class_error: _Optional[_Union[CredibilityStrategy.ClassError, str]] = ..., missing_class_weakness: _Optional[float] = ..., nonconformity: _Optional[_Union[CredibilityStrategy.Nonconformity, str]] = ..., class_conditional: _Optional[bool] = ..., density_alpha: _Optional[float] = ...) -> None: ...

class HybridStrategy(_message.Message):
    __slots__ = ("method", "uncertainty", "density_similarity", "beta", "prefilter_factor", "n_clusters", "include_bias")
    class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        METHOD_UNSPECIFIED: _ClassVar[HybridStrategy.Method]
        METHOD_BADGE: _ClassVar[HybridStrategy.Method]
        METHOD_RANKED_BATCH: _ClassVar[HybridStrategy.Method]
        METHOD_CLUE: _ClassVar[HybridStrategy.Method]
        METHOD_TWO_STEP: _ClassVar[HybridStrategy.Method]
        METHOD_CLUSTER_MARGIN: _ClassVar[HybridStrategy.Method]
        METHOD_DENSITY_WEIGHTED: _ClassVar[HybridStrategy.Method]
        METHOD_EXPECTED_GRADIENT_LENGTH: _ClassVar[HybridStrategy.Method]
    METHOD_UNSPECIFIED: HybridStrategy.Method
    METHOD_BADGE: HybridStrategy.Method
    METHOD_RANKED_BATCH: HybridStrategy.Method
    METHOD_CLUE: HybridStrategy.Method
    METHOD_TWO_STEP: HybridStrategy.Method
    METHOD_CLUSTER_MARGIN: HybridStrategy.Method
    METHOD_DENSITY_WEIGHTED: HybridStrategy.Method
    METHOD_EXPECTED_GRADIENT_LENGTH: HybridStrategy.Method
    METHOD_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    DENSITY_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    PREFILTER_FACTOR_FIELD_NUMBER: _ClassVar[int]
    N_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BIAS_FIELD_NUMBER: _ClassVar[int]
    method: HybridStrategy.Method
    uncertainty: UncertaintyStrategy.Method
    density_similarity: Similarity
    beta: float
    prefilter_factor: int
    n_clusters: int
    include_bias: bool
    def __init__(self, method: _Optional[_Union[HybridStrategy.Method, str]] = ..., uncertainty: _Optional[_Union[UncertaintyStrategy.Method, str]] = ..., density_similarity: _Optional[_Union[Similarity, str]] = ..., beta: _Optional[float] = ..., prefilter_factor: _Optional[int] = ..., n_clusters: _Optional[int] = ..., include_bias: _Optional[bool] = ...) -> None: ...

class TargetSet(_message.Message):
    __slots__ = ("probabilities", "logits")
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    probabilities: Tensor
    logits: Tensor
    def __init__(self, probabilities: _Optional[_Union[Tensor, _Mapping]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("mode", "temperature")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[Selection.Mode]
        MODE_TOP_K: _ClassVar[Selection.Mode]
        MODE_POWER: _ClassVar[Selection.Mode]
        MODE_SOFTMAX: _ClassVar[Selection.Mode]
        MODE_RANK: _ClassVar[Selection.Mode]
    MODE_UNSPECIFIED: Selection.Mode
    MODE_TOP_K: Selection.Mode
    MODE_POWER: Selection.Mode
    MODE_SOFTMAX: Selection.Mode
    MODE_RANK: Selection.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    mode: Selection.Mode
    temperature: float
    def __init__(self, mode: _Optional[_Union[Selection.Mode, str]] = ..., temperature: _Optional[float] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("pool", "labeled", "validation", "uncertainty", "diversity", "credibility", "hybrid", "batch_size", "seed", "omit_scores", "selection", "target", "inference")
    POOL_FIELD_NUMBER: _ClassVar[int]
    LABELED_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    CREDIBILITY_FIELD_NUMBER: _ClassVar[int]
    HYBRID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OMIT_SCORES_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    pool: Pool
    labeled: LabeledSet
    validation: ValidationSet
    uncertainty: UncertaintyStrategy
    diversity: DiversityStrategy
    credibility: CredibilityStrategy
    hybrid: HybridStrategy
    batch_size: int
    seed: int
    omit_scores: bool
    selection: Selection
    target: TargetSet
    inference: Inference
    def __init__(self, pool: _Optional[_Union[Pool, _Mapping]] = ..., labeled: _Optional[_Union[LabeledSet, _Mapping]] = ..., validation: _Optional[_Union[ValidationSet, _Mapping]] = ..., uncertainty: _Optional[_Union[UncertaintyStrategy, _Mapping]] = ..., diversity: _Optional[_Union[DiversityStrategy, _Mapping]] = ..., credibility: _Optional[_Union[CredibilityStrategy, _Mapping]] = ..., hybrid: _Optional[_Union[HybridStrategy, _Mapping]] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., omit_scores: _Optional[bool] = ..., selection: _Optional[_Union[Selection, _Mapping]] = ..., target: _Optional[_Union[TargetSet, _Mapping]] = ..., inference: _Optional[_Union[Inference, _Mapping]] = ...) -> None: ...

class ScoreList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("ranked_indices", "scores", "strategy", "warnings", "extras")
    class ExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ScoreList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ScoreList, _Mapping]] = ...) -> None: ...
    RANKED_INDICES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_FIELD_NUMBER: _ClassVar[int]
    ranked_indices: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    strategy: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    extras: _containers.MessageMap[str, ScoreList]
    def __init__(self, ranked_indices: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., strategy: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., extras: _Optional[_Mapping[str, ScoreList]] = ...) -> None: ...

class ListStrategiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ParameterInfo(_message.Message):
    __slots__ = ("name", "type", "default", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default: str
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class StrategyInfo(_message.Message):
    __slots__ = ("name", "family", "method", "description", "required_inputs", "parameters", "higher_first", "min_passes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_INPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    HIGHER_FIRST_FIELD_NUMBER: _ClassVar[int]
    MIN_PASSES_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    method: str
    description: str
    required_inputs: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterInfo]
    higher_first: bool
    min_passes: int
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., method: _Optional[str] = ..., description: _Optional[str] = ..., required_inputs: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Iterable[_Union[ParameterInfo, _Mapping]]] = ..., higher_first: _Optional[bool] = ..., min_passes: _Optional[int] = ...) -> None: ...

class ListStrategiesResponse(_message.Message):
    __slots__ = ("strategies",)
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    strategies: _containers.RepeatedCompositeFieldContainer[StrategyInfo]
    def __init__(self, strategies: _Optional[_Iterable[_Union[StrategyInfo, _Mapping]]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("onnx", "sha256", "input_name", "output_name", "output_kind", "embeddings_output", "mc_passes")
    ONNX_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MC_PASSES_FIELD_NUMBER: _ClassVar[int]
    onnx: bytes
    sha256: str
    input_name: str
    output_name: str
    output_kind: OutputKind
    embeddings_output: str
    mc_passes: int
    def __init__(self, onnx: _Optional[bytes] = ..., sha256: _Optional[str] = ..., input_name: _Optional[str] = ..., output_name: _Optional[str] = ..., output_kind: _Optional[_Union[OutputKind, str]] = ..., embeddings_output: _Optional[str] = ..., mc_passes: _Optional[int] = ...) -> None: ...

class Inference(_message.Message):
    __slots__ = ("models", "score_validation")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SCORE_VALIDATION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    score_validation: bool
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., score_validation: _Optional[bool] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("chunk", "sha256")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    sha256: str
    def __init__(self, chunk: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("sha256", "size_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Dimension(_message.Message):
    __slots__ = ("size", "name")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    size: int
    name: str
    def __init__(self, size: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ValueInfo(_message.Message):
    __slots__ = ("name", "type", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    shape: _containers.RepeatedCompositeFieldContainer[Dimension]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., shape: _Optional[_Iterable[_Union[Dimension, _Mapping]]] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DescribeModelResponse(_message.Message):
    __slots__ = ("sha256", "size_bytes", "inputs", "outputs", "input_name", "output_name", "embeddings_output", "output_kind", "fixed_batch_size", "class_labels", "training_dropout_nodes", "binding_error", "opsets")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    FIXED_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DROPOUT_NODES_FIELD_NUMBER: _ClassVar[int]
    BINDING_ERROR_FIELD_NUMBER: _ClassVar[int]
    OPSETS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    inputs: _containers.RepeatedCompositeFieldContainer[ValueInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[ValueInfo]
    input_name: str
    output_name: str
    embeddings_output: str
    output_kind: OutputKind
    fixed_batch_size: int
    class_labels: _containers.RepeatedScalarFieldContainer[str]
    training_dropout_nodes: int
    binding_error: str
    opsets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[ValueInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[ValueInfo, _Mapping]]] = ..., input_name: _Optional[str] = ..., output_name: _Optional[str] = ..., embeddings_output: _Optional[str] = ..., output_kind: _Optional[_Union[OutputKind, str]] = ..., fixed_batch_size: _Optional[int] = ..., class_labels: _Optional[_Iterable[str]] = ..., training_dropout_nodes: _Optional[int] = ..., binding_error: _Optional[str] = ..., opsets: _Optional[_Iterable[str]] = ...) -> None: ...

class RankStreamHeader(_message.Message):
    __slots__ = ("request", "streamed_fields")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    request: RankRequest
    streamed_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request: _Optional[_Union[RankRequest, _Mapping]] = ..., streamed_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("field", "data")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    field: str
    data: bytes
    def __init__(self, field: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class RankStreamRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: RankStreamHeader
    chunk: TensorChunk
    def __init__(self, header: _Optional[_Union[RankStreamHeader, _Mapping]] = ..., chunk: _Optional[_Union[TensorChunk, _Mapping]] = ...) -> None: ...

class RankStreamResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: RankResponse
    def __init__(self, response: _Optional[_Union[RankResponse, _Mapping]] = ...) -> None: ...
