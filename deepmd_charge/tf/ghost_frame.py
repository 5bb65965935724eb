"""Training frames fed to DeePMD-kit's environment op with only the grid points as centres.

A training frame is the real atoms plus K ghost atoms (grid points) in a periodic cell. Fed as
it is, DeePMD-kit's CPU environment op copies every atom of the frame, ghosts included, into the
periodically extended region and builds the neighbour list by brute force over all of them, and
every real atom is a descriptor centre although it carries no loss. The ghost type has sel 0, so
all of that is thrown away afterwards: at 2,000 points per Si8 frame the op was two thirds of a
training step, and a step cost 48x a 200-point one (docs/benchmarks.md section 10).

`ghost_centred` rewrites a batch, inside the graph and with TensorFlow ops only (so that `dp
freeze` keeps it), into the layout prediction already uses (predict.py): one frame whose local
atoms are the ghosts of every frame of the batch, whose other atoms are the real atoms' periodic
images near the cell, and whose neighbour list (ghost -> real images within rcut) travels in the
mesh tensor, DeePMD-kit's "neighbour list inside the tensor" mode. The environment op, the
descriptor and the networks are DeePMD-kit's and see exactly the neighbours they saw before
(tests/test_ghost_frame.py compares the descriptors), so a model trained this way is the same
model.
"""

from __future__ import annotations

from deepmd.tf.env import tf

#: mesh tensors longer than this hold a neighbour list (DeePMD-kit's nei_mode 4): already ghost-centred
MESH_WITH_NLIST = 16


def ghost_centred(coord, atype, natoms, box, mesh, *, ntypes: int, rcut: float):
    """(coord, atype, natoms, box, mesh) with only the ghosts (type ntypes-1) as local atoms.

    Inputs are a DeePMD-kit batch as the trainer feeds it: frames of one system (the same types,
    sorted, ghosts last), every atom local, mesh of length 6 (periodic) or 0 (no pbc). A mesh that
    already carries a neighbour list (prediction) passes through unchanged. The result is one
    frame: local atoms are the ghosts, frame by frame, then the real atoms' images within rcut of
    the cell; its neighbour list pairs every ghost with the real images of its own frame within rcut.
    """
    ghost = ntypes - 1
    passthrough = tf.size(mesh) > MESH_WITH_NLIST

    def keep():
        return (
            tf.reshape(coord, [1, -1]),
            tf.reshape(atype, [1, -1]),
            tf.identity(natoms),
            tf.reshape(box, [1, -1]),
            tf.identity(mesh),
        )

    def rewrite():
        return _rewrite(coord, atype, natoms, box, mesh, ghost, ntypes, rcut)

    return tf.cond(passthrough, keep, rewrite)


def centre_on_ghosts(descrpt, ntypes: int) -> None:
    """Make `descrpt.build` see ghost-centred frames (ghost_centred) whatever the trainer feeds.

    Wraps the build method of this one descriptor object (the model's own): DeePMD-kit's model
    calls it with the trainer's placeholders, and nothing else about the descriptor changes.
    """
    if getattr(descrpt, "_charge_ghost_centred", False):
        return
    build = descrpt.build

    def build_on_ghosts(coord_, atype_, natoms, box_, mesh, input_dict, *args, **kwargs):
        coord_, atype_, natoms, box_, mesh = ghost_centred(
            coord_, atype_, natoms, box_, mesh, ntypes=ntypes, rcut=float(descrpt.rcut_r)
        )
        return build(coord_, atype_, natoms, box_, mesh, input_dict, *args, **kwargs)

    descrpt.build = build_on_ghosts
    descrpt._charge_ghost_centred = True


def _rewrite(coord, atype, natoms, box, mesh, ghost, ntypes, rcut):
    f64 = tf.float64
    nloc = natoms[0]
    n_ghost = natoms[2 + ghost]
    n_real = nloc - n_ghost
    xyz = tf.cast(tf.reshape(coord, [-1, natoms[1], 3])[:, :nloc], f64)
    nf = tf.shape(xyz)[0]
    real, pts = xyz[:, :n_real], xyz[:, n_real:]
    # DeePMD-kit sorts a system's atoms by type once: every frame of a batch has the same types
    real_types = tf.reshape(atype, [-1, natoms[1]])[0, :n_real]
    cell = tf.reshape(tf.cast(box, f64), [-1, 3, 3])
    periodic = tf.size(mesh) > 0

    def images():
        # wrap everything into the cell: then the images that can be within rcut of a point are the
        # shifts n with |n_a| <= ceil(rcut / h_a), h_a the cell's height along a
        inv = tf.linalg.inv(cell)
        fr = tf.matmul(real, inv)
        fp = tf.matmul(pts, inv)
        fr = fr - tf.floor(fr)
        fp = fp - tf.floor(fp)
        cross = tf.linalg.cross(tf.gather(cell, [1, 2, 0], axis=1), tf.gather(cell, [2, 0, 1], axis=1))
        vol = tf.abs(tf.linalg.det(cell))
        heights = vol[:, None] / tf.norm(cross, axis=-1)  # [nf, 3]
        reach = tf.cast(tf.reduce_max(tf.math.ceil(rcut / heights), axis=0), tf.int32)
        axes = [tf.range(-reach[a], reach[a] + 1) for a in range(3)]
        grid = tf.meshgrid(*axes, indexing="ij")
        shifts = tf.cast(tf.stack([tf.reshape(g, [-1]) for g in grid], axis=1), f64)  # [S, 3]
        # frac of every image [nf, S, n_real, 3]; keep those within rcut (in heights) of the cell
        fimg = fr[:, None, :, :] + shifts[None, :, None, :]
        margin = (rcut / heights)[:, None, None, :]
        near = tf.reduce_all((fimg > -margin) & (fimg < 1.0 + margin), axis=-1)
        img = tf.einsum("fsra,fab->fsrb", fimg, cell)
        return tf.matmul(fp, cell), img, near

    def as_is():
        return pts, real[:, None], tf.ones([nf, 1, n_real], dtype=tf.bool)

    pts, img, near = tf.cond(periodic, images, as_is)
    n_img = tf.shape(img)[1]
    # flatten: ghosts frame by frame, then the kept images, each with its frame number
    img_flat = tf.reshape(img, [-1, 3])
    near_flat = tf.reshape(near, [-1])
    img_frame = tf.reshape(tf.tile(tf.range(nf)[:, None], [1, n_img * n_real]), [-1])
    img_type = tf.tile(real_types, [nf * n_img])
    keep = tf.where(near_flat)[:, 0]
    img_flat = tf.gather(img_flat, keep)
    img_frame = tf.gather(img_frame, keep)
    img_type = tf.gather(img_type, keep)
    pts_flat = tf.reshape(pts, [-1, 3])
    pts_frame = tf.reshape(tf.tile(tf.range(nf)[:, None], [1, n_ghost]), [-1])
    n_pts = nf * n_ghost
    # squared distances of every ghost to every kept image; pairs of one frame within rcut
    d2 = (
        tf.reduce_sum(pts_flat**2, axis=1)[:, None]
        - 2.0 * tf.matmul(pts_flat, img_flat, transpose_b=True)
        + tf.reduce_sum(img_flat**2, axis=1)[None, :]
    )
    # (a hair beyond rcut: the op itself keeps only neighbours within rcut)
    pair = (d2 < (rcut + 1e-6) ** 2) & tf.equal(pts_frame[:, None], img_frame[None, :])
    ij = tf.cast(tf.where(pair), tf.int32)  # row-major: grouped by ghost, as the mesh list wants
    numneigh = tf.math.bincount(ij[:, 0], minlength=n_pts, maxlength=n_pts, dtype=tf.int32)
    jlist = n_pts + ij[:, 1]
    n_all = n_pts + tf.shape(img_flat)[0]
    new_mesh = tf.concat([[n_pts], tf.zeros([15], tf.int32), tf.range(n_pts), numneigh, jlist], axis=0)
    new_coord = tf.cast(tf.reshape(tf.concat([pts_flat, img_flat], axis=0), [1, -1]), coord.dtype)
    new_type = tf.reshape(tf.concat([tf.fill([n_pts], ghost), tf.cast(img_type, tf.int32)], axis=0), [1, -1])
    counts = tf.one_hot(ghost, ntypes, on_value=n_pts, off_value=0, dtype=tf.int32)
    new_natoms = tf.concat([[n_pts, n_all], counts], axis=0)
    # the op reads no box in this mode; one frame's worth keeps the shapes consistent
    new_box = tf.reshape(tf.cast(box, coord.dtype), [-1, 9])[:1]
    return new_coord, tf.cast(new_type, atype.dtype), tf.cast(new_natoms, natoms.dtype), new_box, new_mesh
