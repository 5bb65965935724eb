"""dpdata format plugin: ``dpdata.System("CHGCAR", fmt="vasp/chgcar")``."""

from __future__ import annotations

from dpdata.format import Format


@Format.register("vasp/chgcar")
@Format.register("chgcar")
class VASPChgcarFormat(Format):
    """VASP CHGCAR/CHG/AECCAR/PARCHG (plain or .gz/.bz2/.xz) as ghost-point training frames.

    Each frame holds all real atoms plus `points_per_frame` ghost atoms (type `ghost`, default X)
    on grid points drawn without replacement; the `density` data (e/A^3, 0 for real atoms) is
    written as set.*/density.npy by ``.to("deepmd/npy", ...)``.

    Options: points_per_frame (200), frames or n_points (100000 total), sampling ("uniform" or
    "weighted"), seed, ghost ("X"), channel ("total" or "magnetization"), elements (species for
    VASP 4 headers), core_radius (0.1 A: points closer to a nucleus are skipped).
    """

    def from_system(self, file_name, elements=None, type_map=None, begin=0, step=1, convergence_check=True, **kwargs):
        # type_map/begin/step are dpdata's generic options: System applies type_map itself
        from deepmd_charge.convert import frames_from_volumetric, register_density
        from deepmd_charge.io.chgcar import read_chgcar

        register_density()
        return frames_from_volumetric(read_chgcar(file_name, elements=elements), **kwargs)
