"""dargs definitions of the "charge" fitting and loss, shown by `dp doc-train-input`."""

from dargs import Argument
from deepmd.utils.argcheck import fitting_args_plugin, loss_args_plugin

#: the charge fitting's defaults, here (no TensorFlow) for `dp doc-train-input` and tf/fitting.py alike
FITTING_NEURON = [240, 240, 240]
#: radial-sum embedding sizes unless fitting_net/radial_neuron says otherwise (se_e2_a only):
#: on the Si8 example (3000 steps, lr 1e-3) NMAE 6.9% -> 4.2%, see docs/benchmarks.md
RADIAL_NEURON = [16, 32]
#: Gaussians per element in the radial basis sums (deepmd_charge/tf/basis.py); 0 turns them off
RADIAL_BASIS = 16

doc_charge_fitting = (
    "Charge-density fitting of deepmd-charge (TensorFlow backend). Grid points are atoms of a ghost "
    'type, the last entry of model/type_map (e.g. ["Si", "X"]); its descriptor sel must be 0. '
    "The net maps a ghost's descriptor to the density there in e/A^3; real atoms output 0. Output "
    "mean and standard deviation are taken from the training labels."
)
doc_neuron = "Hidden layer sizes of the fitting net. Equal neighbouring sizes get a skip connection."
doc_activation = "Activation function of the hidden layers (any DeePMD-kit activation: tanh, gelu, silu, ...)."
doc_resnet_dt = "Use a trainable timestep in the skip connections."
doc_precision = "Precision of the fitting net parameters: default (the interface precision), float32 or float64."
doc_trainable = "Whether the fitting net parameters are trained; a list gives it per layer (len(neuron)+1)."
doc_seed = "Random seed for the initial fitting net parameters."
doc_radial = (
    "se_e2_a only: sizes of a small embedding net g whose radial sums (1/N) sum_j s(r_j) g(s(r_j)) "
    "over the grid point's neighbours are fed to the fitting net next to the descriptor, and through "
    "a linear layer straight to the output (a learned superposition of atomic densities). "
    f"Default: {RADIAL_NEURON} with se_e2_a, off with other descriptors; [] turns it off."
)
doc_basis = (
    "se_e2_a only: number K of Gaussian radial functions per element (spread over [0, rcut], cosine "
    "cutoff) whose sums over a grid point's neighbours give a superposition of learned atomic "
    "densities. Its weights start at the least-squares fit to the training labels, made before "
    "training; the fitting net gets the sums as extra inputs and learns only the remainder. "
    "Switched off, with a warning, when the training structures are an ideal lattice (every "
    "interatomic distance within rcut one of a few values: a perfect crystal, an ideal slab), "
    "where the fit is ill-posed and can make the model worse on distorted structures. "
    f"Default: {RADIAL_BASIS} with se_e2_a, 0 (off) otherwise."
)
doc_basis_trainable = (
    "Whether the radial basis weights are trained with the network (true) or stay at the fit made "
    "before training (false)."
)
doc_ghost_centred = (
    "se_e2_a only: in training, feed DeePMD-kit's environment op frames whose only centres are the "
    "grid points, with the real atoms' periodic images and a neighbour list made in the graph "
    "(the layout prediction uses). The same model and numbers; the step cost no longer grows with "
    "the number of points per frame (docs/benchmarks.md section 10). false: every atom of the frame "
    "is a centre and DeePMD-kit builds the neighbour list over all of them."
)
doc_charge_loss = (
    "Loss of deepmd-charge's charge fitting, computed on the ghost atoms (grid points) only. "
    "The whole section may be omitted; lcurve.out then reports rmse and mae of the density in e/A^3."
)
doc_loss_func = (
    "mae (default), mse, huber or relative (|error| / (|rho| + relative_floor)): the error measure "
    "minimised over the grid points. mae matches "
    "the MAE/NMAE the method is judged by; in docs/benchmarks.md it scored as mse did."
)
doc_huber_delta = "For loss_func huber: quadratic below this error, linear above (e/A^3)."
doc_relative_floor = (
    "For loss_func relative: added to |rho| in the denominator so near-zero densities do not dominate (e/A^3)."
)
doc_label = (
    "Name of the per-atom label file in each set: `density` reads set.*/density.npy (what "
    "`dp-charge convert` writes). Use atom_ener for data in the Deep Charge paper's own layout."
)


@fitting_args_plugin.register("charge", doc=doc_charge_fitting)
def fitting_charge() -> list:
    return [
        Argument("neuron", list[int], optional=True, default=list(FITTING_NEURON), alias=["n_neuron"], doc=doc_neuron),
        Argument("activation_function", str, optional=True, default="tanh", doc=doc_activation),
        Argument("resnet_dt", bool, optional=True, default=True, doc=doc_resnet_dt),
        Argument("precision", str, optional=True, default="default", doc=doc_precision),
        Argument("trainable", [list[bool], bool], optional=True, default=True, doc=doc_trainable),
        Argument("seed", [int, None], optional=True, doc=doc_seed),
        Argument("radial_neuron", [list[int], None], optional=True, default=None, doc=doc_radial),
        Argument("radial_basis", [int, None], optional=True, default=None, doc=doc_basis),
        Argument("basis_trainable", bool, optional=True, default=True, doc=doc_basis_trainable),
        Argument("ghost_centred", bool, optional=True, default=True, doc=doc_ghost_centred),
    ]


@loss_args_plugin.register("charge", doc=doc_charge_loss)
def loss_charge() -> list:
    return [
        Argument("loss_func", str, optional=True, default="mae", doc=doc_loss_func),
        Argument("huber_delta", float, optional=True, default=0.01, doc=doc_huber_delta),
        Argument("relative_floor", float, optional=True, default=0.01, doc=doc_relative_floor),
        Argument("label", str, optional=True, default="density", doc=doc_label),
    ]
