"""Writes the committed format-1 model files of tests/data (run once, with ul4m4 0.1.0)."""
import numpy as np

from ul4m4 import UL4M4Imputer

rng = np.random.default_rng(7)
n = 120
group = rng.integers(0, 4, size=n + 25)
latent = rng.normal(scale=3.0, size=(4, 12))[group] + rng.normal(size=(n + 25, 12))
full = {"text": latent[:, :5], "image": latent[:, 5:8] + 2.0, "audio": latent[:, 8:]}
X = {k: v[:n].copy() for k, v in full.items()}
X["image"][:30] = np.nan
X["audio"][20:50] = np.nan
X["text"][100:110] = np.nan
new = {k: v[n:].copy() for k, v in full.items()}
new["text"][:5] = np.nan
new["image"][5:15] = np.nan
new["audio"][10:20] = np.nan
auto = UL4M4Imputer("auto", completion="auto", k_grid=(2, 4), n_ensemble=3,
                    random_state=0).fit(X)
auto.save("tests/data/model_v1_auto.ul4m4")
plain = UL4M4Imputer(4, completion="soft", dtype=np.float64, random_state=1).fit(X)
plain.save("tests/data/model_v1_soft64.ul4m4")
out_auto = auto.transform(new)
out_plain, src, w = plain.transform(new, return_sources=True, return_weights=True)
arrays = {f"new/{k}": v for k, v in new.items()}
arrays.update({f"auto/{k}": v for k, v in out_auto.items()})
arrays.update({f"soft64/{k}": v for k, v in out_plain.items()})
arrays.update({f"soft64_sources/{k}": v for k, v in src.items()})
arrays.update({f"soft64_weights/{k}": v for k, v in w.items()})
arrays["auto_labels"] = auto.predict(new)
np.savez("tests/data/model_v1_expected.npz", **arrays)
print(auto.n_clusters_, auto.completion_, plain.n_iter_)
