"""Weight fingerprints: equal for equal weights, different for any changed weight or name."""

import torch

from grabnas.models.fingerprint import module_fingerprint


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))


def test_fingerprint_follows_the_weights():
    a, b = _net(0), _net(0)
    fp = module_fingerprint(a)
    assert len(fp) == 16 and all(c in "0123456789abcdef" for c in fp)
    assert module_fingerprint(b) == fp  # same weights, another object
    with torch.no_grad():
        b[2].bias += 1e-7  # one weight, barely moved
    assert module_fingerprint(b) != fp
    renamed = torch.nn.Sequential()
    renamed.add_module("first", a[0])
    renamed.add_module("act", a[1])
    renamed.add_module("last", a[2])
    assert module_fingerprint(renamed) != fp  # same values under other names
