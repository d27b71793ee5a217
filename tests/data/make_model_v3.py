"""Writes the committed format-3 model files of tests/data (run once, with ul4m4 0.2.0).

An auto model whose ensembles hold the conditional mixture, and a plain greedy one,
with the fills, sources, predicted errors and labels they gave new rows then.
"""
import numpy as np

from ul4m4 import UL4M4Imputer

rng = np.random.default_rng(11)
n, extra = 400, 40
group = rng.integers(0, 5, size=n + extra)
loadings = rng.normal(size=(3, 16))
latent = (rng.normal(scale=2.0, size=(5, 16))[group]
          + rng.normal(size=(n + extra, 3)) @ loadings + 0.3 * rng.normal(size=(n + extra, 16)))
full = {"text": latent[:, :6], "image": latent[:, 6:10] * 4.0 + 1.0, "audio": latent[:, 10:]}
present = rng.random((n + extra, 3)) < 0.6
present[np.arange(n + extra), rng.integers(0, 3, size=n + extra)] = True
X = {k: np.where(present[:, m, None], v, np.nan) for m, (k, v) in enumerate(full.items())}
train = {k: v[:n] for k, v in X.items()}
new = {k: v[n:] for k, v in X.items()}
auto = UL4M4Imputer(8, completion="auto", random_state=0).fit(train)
auto.save("tests/data/model_v3_auto.ul4m4")
greedy = UL4M4Imputer(5, dtype=np.float64, random_state=3).fit(train)
greedy.save("tests/data/model_v3_greedy.ul4m4")
out_auto, std_auto = auto.transform(new, return_std=True)
out_greedy, sources = greedy.transform(new, return_sources=True)
arrays = {f"new/{k}": v for k, v in new.items()}
arrays.update({f"auto/{k}": v for k, v in out_auto.items()})
arrays.update({f"auto_std/{k}": v for k, v in std_auto.items()})
arrays.update({f"greedy/{k}": v for k, v in out_greedy.items()})
arrays.update({f"greedy_sources/{k}": v for k, v in sources.items()})
arrays["auto_labels"] = auto.predict(new)
np.savez_compressed("tests/data/model_v3_expected.npz", **arrays)
print(auto.selection_)
