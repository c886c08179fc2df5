"""D-VAE: a variational autoencoder over architecture DAGs (Zhang et al., NeurIPS 2019).

The model sees only :class:`~grabnas.spaces.base.DAG` views, so it works for every space.

* **Encoder.** Asynchronous message passing in topological order: node ``v`` gets the state
  ``h_v = GRUCell(onehot(type_v), sum_{u -> v} sigmoid(g(h_u)) * m(h_u))`` (D-VAE's gated sum;
  ``g``/``m`` also see a one-hot of the predecessor's position, D-VAE's "vid"). Optionally a
  second pass runs backwards over successors. The graph state is the output node's forward
  state (unified with the input node's backward state when bidirectional); linear heads give
  ``mu`` and ``logvar``.
* **Decoder.** ``z`` gives the input node's hidden state ``h_z = tanh(W z + b)``. Nodes are added
  one at a time: an MLP on the last node's state predicts the next type; then each earlier node
  ``u = v-1, ..., 0`` is asked, by an MLP on ``(h_u, h_v)``, whether ``u -> v`` is an edge, and
  ``h_v`` is recomputed after every added edge. Teacher forcing gives the training likelihood.
  Two additions to the reference (both configurable): the type and edge MLPs also see ``h_z``
  and one-hot node positions. Positions are needed because two nodes with the same type and
  predecessors get equal states (NB201's nodes 1 and 2 often do), so without them the decoder
  cannot tell which of the two an edge starts at; ``h_z`` is a short path from ``z`` to every
  decision (the reference's edge score takes ``H0`` as an optional input too).
* **Number of nodes.** The output type doubles as D-VAE's end type: a graph ends at the first
  output node, and node ``max_nodes - 1`` is forced to be the output. Both shipped spaces have
  exactly ``max_nodes`` nodes, which the model learns (an early end decodes to a non-member).
  The output node is connected to every loose end (node without successors), as in D-VAE;
  with ``predict_output_edges`` its incoming edges are also predicted (union with loose ends).

All graphs of a batch are processed node position by node position with padding and masks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grabnas.errors import GrabnasError, InvalidArchitectureError
from grabnas.spaces.base import DAG, Architecture, SearchSpace

INPUT_TYPE = 0
OUTPUT_TYPE = 1


@dataclass(frozen=True)
class GraphVAEConfig:
    """Hyperparameters of a :class:`GraphVAE`.

    Attributes:
        num_types: node-type vocabulary size (``len(space.node_type_names)``; 0 input, 1 output).
        max_nodes: most nodes of a DAG, input and output included.
        hidden_dim: node-state size of every GRU.
        latent_dim: size of z.
        bidirectional: also run a reverse message-passing pass in the encoder.
        vertex_ids: feed one-hots of node positions to the message gate and map (D-VAE's "vid")
            and to the decoder's type and edge MLPs. Without them two nodes with equal states
            (same type, same predecessors) cannot be told apart, so the decoder cannot say which
            of them an edge starts at or which type comes at which position.
        beta: weight of the KL term.
        eps_scale: scale of the posterior noise while training (D-VAE's reference code uses 0.01).
        predict_output_edges: predict the output node's edges too (else: exactly the loose ends).
        edge_hidden_mult: width of the edge MLP's hidden layer in units of ``hidden_dim``.
        condition_on_z: also feed ``h_z = tanh(W z + b)`` to the type and edge MLPs (D-VAE's
            edge score takes it as an optional input): a short path from z to every decision.
    """

    num_types: int
    max_nodes: int
    hidden_dim: int = 128
    latent_dim: int = 16
    bidirectional: bool = True
    vertex_ids: bool = True
    beta: float = 0.005
    eps_scale: float = 1.0
    predict_output_edges: bool = False
    edge_hidden_mult: int = 2
    condition_on_z: bool = True

    def __post_init__(self) -> None:
        if self.num_types < 3 or self.max_nodes < 2 or self.hidden_dim < 1 or self.latent_dim < 1:
            raise GrabnasError(
                f"invalid graph VAE config {self}; expected num_types >= 3, max_nodes >= 2 and positive sizes"
            )

    @classmethod
    def for_space(cls, space: SearchSpace, **overrides: object) -> GraphVAEConfig:
        """The config for ``space`` (types and node count from the space) with ``overrides``."""
        return cls(num_types=len(space.node_type_names), max_nodes=space.max_nodes, **overrides)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GraphVAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GrabnasError(f"unknown graph VAE config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


@dataclass
class DAGBatch:
    """DAGs padded to ``max_nodes`` nodes.

    Attributes:
        types: ``(B, N)`` long node types, ``-1`` on padding.
        adj: ``(B, N, N)`` float adjacency, ``adj[b, u, v] = 1`` for an edge ``u -> v``.
        num_nodes: ``(B,)`` long number of real nodes.
    """

    types: Tensor
    adj: Tensor
    num_nodes: Tensor

    @classmethod
    def from_dags(cls, dags: Sequence[DAG], config: GraphVAEConfig) -> DAGBatch:
        n_max = config.max_nodes
        types = np.full((len(dags), n_max), -1, dtype=np.int64)
        adj = np.zeros((len(dags), n_max, n_max), dtype=np.float32)
        num = np.zeros(len(dags), dtype=np.int64)
        for b, dag in enumerate(dags):
            n = dag.num_nodes
            if not 2 <= n <= n_max:
                raise GrabnasError(f"a DAG with {n} nodes cannot be encoded; this VAE handles 2 to {n_max} nodes")
            t = dag.node_types
            if t[0] != INPUT_TYPE or t[-1] != OUTPUT_TYPE or any(not 2 <= x < config.num_types for x in t[1:-1]):
                raise GrabnasError(
                    f"DAG node types {t} cannot be encoded; expected input (0) first, output (1) last "
                    f"and operation types 2..{config.num_types - 1} between"
                )
            types[b, :n] = t
            num[b] = n
            for s, d in dag.edges:
                adj[b, s, d] = 1.0
        return cls(torch.from_numpy(types), torch.from_numpy(adj), torch.from_numpy(num))

    def __len__(self) -> int:
        return int(self.types.shape[0])

    def __getitem__(self, index: Tensor | slice | np.ndarray) -> DAGBatch:
        return DAGBatch(self.types[index], self.adj[index], self.num_nodes[index])


class VAELoss(NamedTuple):
    """Batch means of the loss terms; ``total = type_nll + edge_nll + beta * kl``."""

    total: Tensor
    type_nll: Tensor
    edge_nll: Tensor
    kl: Tensor


class _Messages(nn.Module):
    """D-VAE's gated message ``sigmoid(g([h, id])) * m([h, id])``; ``m`` has no bias."""

    def __init__(self, hidden: int, max_nodes: int, vertex_ids: bool) -> None:
        super().__init__()
        self.ids = max_nodes if vertex_ids else 0
        self.gate = nn.Linear(hidden + self.ids, hidden)
        self.map = nn.Linear(hidden + self.ids, hidden, bias=False)

    def forward(self, h: Tensor, position: int) -> Tensor:
        """``(B, H)`` state of the node at ``position`` -> ``(B, H)`` message."""
        if self.ids:
            vid = h.new_zeros(h.shape[0], self.ids)
            vid[:, position] = 1.0
            h = torch.cat([h, vid], dim=-1)
        return torch.sigmoid(self.gate(h)) * self.map(h)


def _gather_sum(weights: Tensor, messages: list[Tensor]) -> Tensor:
    """``(B, k)`` 0/1 weights and ``k`` messages ``(B, H)`` -> ``(B, H)`` weighted sum."""
    out = torch.zeros_like(messages[0])
    used = weights.any(dim=0).tolist()
    for i, message in enumerate(messages):
        if used[i]:  # skip senders that feed no graph of the batch
            out = out + weights[:, i : i + 1] * message
    return out


class GraphVAE(nn.Module):
    """D-VAE over DAGs with ``config.num_types`` node types and at most ``config.max_nodes`` nodes."""

    def __init__(self, config: GraphVAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        if generator is None:
            self._build()
        else:  # build without drawing from the global RNG, then initialise from ``generator``
            with torch.device("meta"):
                self._build()
            self.to_empty(device="cpu")
            self.reset_parameters(generator)

    def _build(self) -> None:
        config = self.config
        h, t, n = config.hidden_dim, config.num_types, config.max_nodes
        # encoder
        self.enc_forward = nn.GRUCell(t, h)
        self.enc_forward_msg = _Messages(h, n, config.vertex_ids)
        if config.bidirectional:
            self.enc_backward = nn.GRUCell(t, h)
            self.enc_backward_msg = _Messages(h, n, config.vertex_ids)
            self.unify = nn.Linear(2 * h, h)
        self.fc_mu = nn.Linear(h, config.latent_dim)
        self.fc_logvar = nn.Linear(h, config.latent_dim)
        # decoder
        self.fc_z = nn.Linear(config.latent_dim, h)
        self.dec = nn.GRUCell(t, h)
        self.dec_msg = _Messages(h, n, config.vertex_ids)
        extra = (h if config.condition_on_z else 0) + (n if config.vertex_ids else 0)
        self.add_vertex = nn.Sequential(nn.Linear(h + extra, 2 * h), nn.ReLU(), nn.Linear(2 * h, t))
        # D-VAE's edge MLP on [h_u, h_v]: its first layer is split so that the h_u half is
        # computed once per earlier node instead of once per decision.
        e = config.edge_hidden_mult * h
        self.edge_src = nn.Linear(h, e)
        self.edge_dst = nn.Linear(h, e, bias=False)
        self.edge_out = nn.Linear(e, 1)
        if config.condition_on_z:
            self.edge_z = nn.Linear(h, e, bias=False)
        if config.vertex_ids:  # one-hot positions of the two ends (weight columns are used directly)
            self.edge_pos_src = nn.Linear(n, e, bias=False)
            self.edge_pos_dst = nn.Linear(n, e, bias=False)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` initialisation, drawn from ``generator``."""
        done: set[int] = set()
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    params = [module.weight] + ([module.bias] if module.bias is not None else [])
                elif isinstance(module, nn.GRUCell):
                    bound = 1.0 / math.sqrt(module.hidden_size)
                    params = list(module.parameters())
                else:
                    continue
                for p in params:
                    p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound - bound)
                    done.add(id(p))
            missed = [n for n, p in self.named_parameters() if id(p) not in done]
            if missed:
                raise TypeError(f"reset_parameters does not know how to initialise {missed}")

    # -- batching ---------------------------------------------------------------------------
    def batch(self, dags: Sequence[DAG] | DAGBatch) -> DAGBatch:
        """Pad ``dags`` into a :class:`DAGBatch` on this model's device."""
        b = dags if isinstance(dags, DAGBatch) else DAGBatch.from_dags(dags, self.config)
        dev = self.fc_mu.weight.device
        return DAGBatch(b.types.to(dev), b.adj.to(dev), b.num_nodes.to(dev))

    def _onehot(self, types: Tensor) -> Tensor:
        """``(...)`` long types (``-1`` = padding) -> ``(..., T)`` float one-hot (zeros on padding)."""
        x = F.one_hot(types.clamp(min=0), self.config.num_types).to(self.fc_mu.weight.dtype)
        return x * (types >= 0).unsqueeze(-1).to(x.dtype)

    # -- encoder ----------------------------------------------------------------------------
    def encode(self, dags: Sequence[DAG] | DAGBatch) -> tuple[Tensor, Tensor]:
        """Posterior parameters of ``B`` DAGs: ``mu`` and ``logvar``, each ``(B, latent_dim)``.

        Differentiable with respect to the model's parameters.
        """
        batch = self.batch(dags)
        x = self._onehot(batch.types)  # (B, N, T)
        adj = batch.adj  # (B, N, N)
        bsz, n_max = batch.types.shape
        zeros = x.new_zeros(bsz, self.config.hidden_dim)
        states: list[Tensor] = []
        messages: list[Tensor] = []
        for v in range(n_max):
            h_in = _gather_sum(adj[:, :v, v], messages) if messages else zeros
            h = self.enc_forward(x[:, v], h_in)
            states.append(h)
            messages.append(self.enc_forward_msg(h, v))
        last = (batch.num_nodes - 1).view(bsz, 1, 1).expand(bsz, 1, self.config.hidden_dim)
        hg = torch.stack(states, dim=1).gather(1, last).squeeze(1)  # (B, H): output node
        if self.config.bidirectional:
            back_msgs: dict[int, Tensor] = {}
            h = zeros
            for v in reversed(range(n_max)):
                later = [back_msgs[k] for k in range(v + 1, n_max)]
                h_in = _gather_sum(adj[:, v, v + 1 :], later) if later else zeros
                h = self.enc_backward(x[:, v], h_in)
                back_msgs[v] = self.enc_backward_msg(h, v)
            hg = self.unify(torch.cat([hg, h], dim=-1))  # h: input node's backward state
        return self.fc_mu(hg), self.fc_logvar(hg)

    def forward(self, dags: Sequence[DAG] | DAGBatch) -> tuple[Tensor, Tensor]:
        """Same as :meth:`encode`: ``(mu, logvar)``, each ``(B, latent_dim)``."""
        return self.encode(dags)

    def reparameterize(self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z = mu + eps_scale * exp(logvar / 2) * eps``, ``eps ~ N(0, I)``; shapes ``(B, latent_dim)``."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + self.config.eps_scale * torch.exp(0.5 * logvar) * eps

    # -- decoder: likelihood ------------------------------------------------------------------
    def _type_logits(self, h_last: Tensor, h_z: Tensor, position: int) -> Tensor:
        """Logits ``(B, T)`` of the type of the node at ``position``.

        From the ``(B, H)`` state of the last node (and ``h_z = tanh(W z + b)``, ``(B, H)``, and the
        position's one-hot, as configured). The input type is never predicted (logit ``-inf``).
        """
        parts = [h_last]
        if self.config.condition_on_z:
            parts.append(h_z)
        if self.config.vertex_ids:
            pos = h_last.new_zeros(h_last.shape[0], self.config.max_nodes)
            pos[:, position] = 1.0
            parts.append(pos)
        logits = self.add_vertex(torch.cat(parts, dim=-1))
        return logits.masked_fill(
            F.one_hot(torch.tensor(INPUT_TYPE, device=logits.device), self.config.num_types).bool(), float("-inf")
        )

    def log_likelihood(self, z: Tensor, dags: Sequence[DAG] | DAGBatch) -> tuple[Tensor, Tensor]:
        """Teacher-forced ``log p(types | z)`` and ``log p(edges | z)`` of ``B`` DAGs, each ``(B,)``.

        Differentiable with respect to ``z`` (``(B, latent_dim)``) and the decoder's parameters.
        """
        batch = self.batch(dags)
        x = self._onehot(batch.types)
        adj = batch.adj
        bsz, n_max = batch.types.shape
        cfg = self.config
        h_z = torch.tanh(self.fc_z(z))
        h = self.dec(x[:, 0], h_z)
        states, messages, sources = [h], [self.dec_msg(h, 0)], [self._edge_source(h, h_z, 0)]
        type_ll = x.new_zeros(bsz)
        edge_ll = x.new_zeros(bsz)
        zeros = x.new_zeros(bsz, cfg.hidden_dim)
        for v in range(1, n_max):
            real = (v < batch.num_nodes).to(x.dtype)  # (B,)
            if v < cfg.max_nodes - 1:  # the last position is forced to be the output
                logp = F.log_softmax(self._type_logits(states[-1], h_z, v), dim=-1)
                # padding (-1) reads the output type's finite log-probability, then is masked out
                picked = logp.gather(1, batch.types[:, v].clamp(min=OUTPUT_TYPE).unsqueeze(1)).squeeze(1)
                type_ll = type_ll + torch.where(real > 0, picked, torch.zeros_like(picked))
            is_out = (batch.types[:, v] == OUTPUT_TYPE).to(x.dtype)
            weight = real if cfg.predict_output_edges else real * (1 - is_out)
            if not bool(weight.any()):
                break  # only output nodes (no edge decisions) or padding at this position
            h_in = zeros
            h = self.dec(x[:, v], h_in)
            for u in range(v - 1, -1, -1):
                score = self._edge_logit(sources[u], h, v)
                target = adj[:, u, v]
                edge_ll = edge_ll - weight * F.binary_cross_entropy_with_logits(score, target, reduction="none")
                if bool(target.any()):  # otherwise h_v is unchanged
                    h_in = h_in + target.unsqueeze(-1) * messages[u]
                    h = self.dec(x[:, v], h_in)
            states.append(h)
            messages.append(self.dec_msg(h, v))
            sources.append(self._edge_source(h, h_z, v))
        return type_ll, edge_ll

    def _edge_source(self, h: Tensor, h_z: Tensor, position: int) -> Tensor:
        """``(B, H)`` state of the finished node at ``position`` -> ``(B, E)``: its (and z's) part
        of the edge MLP's first layer."""
        out = self.edge_src(h)
        if self.config.condition_on_z:
            out = out + self.edge_z(h_z)
        if self.config.vertex_ids:
            out = out + self.edge_pos_src.weight[:, position]
        return out

    def _edge_logit(self, source: Tensor, h_new: Tensor, position: int) -> Tensor:
        """``(B, E)`` edge source of an earlier node and ``(B, H)`` state of the new node at
        ``position`` -> ``(B,)`` logit of the edge between them."""
        pre = source + self.edge_dst(h_new)
        if self.config.vertex_ids:
            pre = pre + self.edge_pos_dst.weight[:, position]
        return self.edge_out(F.relu(pre)).squeeze(-1)

    def loss(self, dags: Sequence[DAG] | DAGBatch, generator: torch.Generator | None = None) -> VAELoss:
        """The negative ELBO of ``B`` DAGs (batch means), with ``z`` drawn from the posterior."""
        batch = self.batch(dags)
        mu, logvar = self.encode(batch)
        z = self.reparameterize(mu, logvar, generator)
        type_ll, edge_ll = self.log_likelihood(z, batch)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        type_nll, edge_nll = -type_ll.mean(), -edge_ll.mean()
        kl_mean = kl.mean()
        return VAELoss(type_nll + edge_nll + self.config.beta * kl_mean, type_nll, edge_nll, kl_mean)

    # -- decoder: generation ----------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        stochastic: bool = False,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> list[DAG]:
        """Decode ``z`` of shape ``(B, latent_dim)`` into DAGs.

        Greedy (argmax type, edge iff probability > 0.5) unless ``stochastic``, which samples every
        decision (drawing from ``generator``). Returns ``B * num_samples`` DAGs, graph-major: the
        samples of ``z[i]`` are items ``i * num_samples ... (i + 1) * num_samples - 1``.
        """
        cfg = self.config
        if z.dim() != 2 or z.shape[1] != cfg.latent_dim:
            raise GrabnasError(f"z has shape {tuple(z.shape)}; expected (batch, {cfg.latent_dim})")
        z = z.to(self.fc_mu.weight.device, self.fc_mu.weight.dtype)
        if num_samples > 1:
            z = z.repeat_interleave(num_samples, dim=0)
        m, n_max, dev = z.shape[0], cfg.max_nodes, z.device
        types = torch.full((m, n_max), -1, dtype=torch.long, device=dev)
        types[:, 0] = INPUT_TYPE
        adj = torch.zeros(m, n_max, n_max, dtype=torch.bool, device=dev)
        num_nodes = torch.full((m,), n_max, dtype=torch.long, device=dev)
        done = torch.zeros(m, dtype=torch.bool, device=dev)
        h_z = torch.tanh(self.fc_z(z))
        h = self.dec(self._onehot(types[:, 0]), h_z)
        states, messages, sources = [h], [self.dec_msg(h, 0)], [self._edge_source(h, h_z, 0)]
        zeros = z.new_zeros(m, cfg.hidden_dim)
        for v in range(1, n_max):
            if v == n_max - 1:
                new = torch.full((m,), OUTPUT_TYPE, dtype=torch.long, device=dev)
            else:
                logits = self._type_logits(states[-1], h_z, v)
                if stochastic:
                    new = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
                else:
                    new = logits.argmax(dim=-1)
            new = new.masked_fill(done, -1)
            types[:, v] = new
            ending = new == OUTPUT_TYPE
            deciding = (new >= 0) if cfg.predict_output_edges else (new >= 2)
            x_v = self._onehot(new)
            h_in = zeros
            h = self.dec(x_v, h_in)
            if bool(deciding.any()):
                for u in range(v - 1, -1, -1):
                    p = torch.sigmoid(self._edge_logit(sources[u], h, v))
                    if stochastic:
                        edge = torch.rand(m, generator=generator, device=dev) < p
                    else:
                        edge = p > 0.5
                    edge = edge & deciding
                    adj[:, u, v] = edge
                    if bool(edge.any()):
                        h_in = h_in + edge.unsqueeze(-1).to(h.dtype) * messages[u]
                        h = self.dec(x_v, h_in)
            if bool(ending.any()):
                loose = ~adj[:, :v, :v].any(dim=-1)  # (m, v): no successor so far
                adj[:, :v, v] |= loose & ending.unsqueeze(-1)
                num_nodes = torch.where(ending, torch.full_like(num_nodes, v + 1), num_nodes)
                done = done | ending
                if bool(done.all()):
                    break
            states.append(h)
            messages.append(self.dec_msg(h, v))
            sources.append(self._edge_source(h, h_z, v))
        return _to_dags(types.cpu().numpy(), adj.cpu().numpy(), num_nodes.cpu().numpy())


def _to_dags(types: np.ndarray, adj: np.ndarray, num_nodes: np.ndarray) -> list[DAG]:
    """``(M, N)`` types, ``(M, N, N)`` bool adjacency and ``(M,)`` sizes -> ``M`` DAGs."""
    out = []
    for t, a, n in zip(types, adj, num_nodes):
        src, dst = np.nonzero(a[:n, :n])
        out.append(DAG(tuple(int(x) for x in t[:n]), tuple(zip(src.tolist(), dst.tolist()))))
    return out


DecodeMode = Literal["greedy", "vote"]


class ArchitectureVAE:
    """A :class:`GraphVAE` bound to a search space: architectures in, architectures out.

    ``card`` carries the checkpoint's JSON card (space, config, split seed, metrics) when the
    model was loaded or trained; see :mod:`grabnas.meta.vae_training` and, to save or load one,
    :mod:`grabnas.meta.checkpoints`.
    """

    def __init__(self, space: SearchSpace, model: GraphVAE, card: dict | None = None) -> None:
        cfg = model.config
        if cfg.num_types != len(space.node_type_names) or cfg.max_nodes != space.max_nodes:
            raise GrabnasError(
                f"graph VAE with {cfg.num_types} node types and {cfg.max_nodes} nodes does not fit the "
                f"{space.name} space ({len(space.node_type_names)} node types, {space.max_nodes} nodes)"
            )
        self.space = space
        self.model = model
        self.card = dict(card or {})

    @classmethod
    def create(
        cls, space: SearchSpace, generator: torch.Generator | None = None, **config_overrides: object
    ) -> ArchitectureVAE:
        """A fresh (untrained) VAE for ``space``; ``config_overrides`` go to :class:`GraphVAEConfig`."""
        return cls(space, GraphVAE(GraphVAEConfig.for_space(space, **config_overrides), generator))

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    def to_dags(self, archs: Sequence[Architecture]) -> list[DAG]:
        """The DAG views of ``archs``; an error for an architecture of another space."""
        for a in archs:
            if getattr(a, "space_name", None) != self.space.name:
                raise GrabnasError(f"{a} is not an architecture of the {self.space.name} space")
        return [self.space.to_dag(a) for a in archs]

    def encode_archs(
        self, archs: Sequence[Architecture], *, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """``(B, latent_dim)`` posterior means of ``archs`` (or posterior samples with ``sample``).

        Differentiable w.r.t. the model's parameters; wrap in ``torch.no_grad()`` for plain use.
        """
        mu, logvar = self.model.encode(self.to_dags(archs))
        return self.model.reparameterize(mu, logvar, generator) if sample else mu

    def archs_from_dags(self, dags: Sequence[DAG]) -> list[Architecture | None]:
        """The member each DAG describes, ``None`` where the space says it describes none."""
        out: list[Architecture | None] = []
        for d in dags:
            try:
                out.append(self.space.from_dag(d))
            except InvalidArchitectureError:
                out.append(None)
        return out

    def decode_archs(
        self,
        z: Tensor,
        mode: DecodeMode = "greedy",
        k: int = 10,
        generator: torch.Generator | None = None,
    ) -> list[Architecture | None]:
        """Decode ``(B, latent_dim)`` latents (a ``(latent_dim,)`` vector counts as ``B = 1``).

        ``greedy``: the argmax decode. ``vote``: ``k`` stochastic decodes per latent and the most
        frequent valid architecture among them (ties: first drawn). Items that decode to no member
        (every sample, for ``vote``) are ``None``, never a wrong architecture.
        """
        z = torch.as_tensor(z)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if mode == "greedy":
            return self.archs_from_dags(self.model.decode(z))
        if mode != "vote":
            raise GrabnasError(f"unknown decode mode {mode!r}; expected 'greedy' or 'vote'")
        if k < 1:
            raise GrabnasError(f"vote decoding needs k >= 1 samples, got {k}")
        archs = self.archs_from_dags(self.model.decode(z, stochastic=True, num_samples=k, generator=generator))
        out: list[Architecture | None] = []
        for i in range(z.shape[0]):
            votes = Counter(a for a in archs[i * k : (i + 1) * k] if a is not None)
            out.append(votes.most_common(1)[0][0] if votes else None)
        return out
