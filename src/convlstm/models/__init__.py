"""Ready forecasting models, by name.

Every model maps channels-last input sequences :math:`(B, T_{in}, H, W, C)` to forecasts
:math:`(B, T_{out}, H, W, C_{out})` and has ``input_steps`` / ``output_steps`` attributes
(``None`` where any length works or, for ``keras-nextframe``, where the output has the input's
length).

=====================  ========================================================================
name                   model
=====================  ========================================================================
``convlstm-warp``      :class:`MotionWarpForecaster` (the toolkit's default): a ConvLSTM at
                       :math:`1/p` resolution whose full-resolution head moves the last frame
                       along block-matching motion refined by the network, plus a correction
``keras-nextframe``    :class:`KerasNextFrame`: the keras-io next-frame example; T frames -> the
                       T next frames (or an autoregressive rollout with ``output_steps=L``)
``shi2015-1x256``      :class:`ShiEncoderForecaster` with filters 256 (Shi et al. 2015, Table 1)
``shi2015-2x128``      filters 128, 128
``shi2015-128-64-64``  filters 128, 64, 64
``st-convlstm``        :class:`MultiStreamConvLSTM`: closeness, period and trend frames through
                       ConvLSTM branches with ST-ResNet's parametric fusion (or one stacked
                       branch), plus an embedding of calendar / external features
=====================  ========================================================================

Example::

    >>> import convlstm.models as models
    >>> models.list_models()
    ['convlstm-warp', 'keras-nextframe', 'shi2015-128-64-64', 'shi2015-1x256', 'shi2015-2x128', 'st-convlstm']
    >>> model = models.create("keras-nextframe", in_channels=2, filters=(16, 16))

Any of them can start from a baseline that the untrained model equals (``start_from=``, see
:class:`StartFromBaseline`); ``convlstm fit`` does this by default (``--start-from auto``).
"""
from .registry import create, list_models, model_info, register_model
from .patching import DepthToSpace, SpaceToDepth, depth_to_space, space_to_depth
from .keras_nextframe import KERAS_BN_EPSILON, KERAS_BN_MOMENTUM, KerasNextFrame
from .shi2015 import InputFreeConvLSTM, ShiEncoderForecaster
from .warp import MotionWarpForecaster, auto_patch_size, warp_frame
from .streams import FUSIONS, MultiStreamConvLSTM
from .baseline_start import STARTS, StartFromBaseline, resolve_start, start_from_baseline
from .members import StochasticMembers, correlated_noise

__all__ = [
    "create", "list_models", "model_info", "register_model", "SpaceToDepth", "DepthToSpace", "space_to_depth",
    "depth_to_space", "KerasNextFrame", "KERAS_BN_MOMENTUM", "KERAS_BN_EPSILON", "ShiEncoderForecaster",
    "InputFreeConvLSTM", "MotionWarpForecaster", "auto_patch_size", "warp_frame", "MultiStreamConvLSTM", "FUSIONS",
    "StartFromBaseline", "STARTS", "resolve_start", "start_from_baseline", "StochasticMembers", "correlated_noise",
]
