"""Vision Transformer, as in "An Image is Worth 16x16 Words" (Dosovitskiy et al. 2021).

An image is cut into non-overlapping patches; each flattened patch is projected
linearly to a token; a learnable class token is prepended; position embeddings are
added; a stack of Transformer blocks mixes the tokens; the class token (or the mean
of the patch tokens) is classified by a linear head.

Module names follow timm's VisionTransformer (norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2, norm, head), so weights map across one-to-one, except patch_embed:
ours is the Linear of the paper, timm's the equivalent conv (see references.py).
Initialisation follows the paper's JAX code (vit_jax / big_vision), not timm's default;
init="mimetic" re-draws the attention weights as Trockman & Kolter (2023) do (see mimetic_init_).
"""

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from .blocks import resolve_block
from .resnet import conv3x3

# Every LayerNorm uses the epsilon of the JAX reference (PyTorch's default is 1e-5).
LN_EPS = 1e-6


def lecun_normal_(weight: torch.Tensor) -> None:
    """Flax's default kernel init: truncated normal (+-2 std) with variance 1/fan_in.

    Dividing by 0.8796 (the std of a standard normal truncated to [-2, 2]) restores the
    variance that truncation removes.
    """
    std = math.sqrt(1.0 / weight.shape[1]) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


# Trockman & Kolter 2023, "Mimetic Initialization of Self-Attention Layers", their ViT-Tiny values
# as (alpha, beta) of the target alpha * Z + beta * I: W_q W_k^T per head ~ 0.7 Z + 0.7 I,
# W_v W_proj ~ 0.4 Z - 0.4 I.
MIMETIC_QK = (0.7, 0.7)
MIMETIC_VO = (0.4, -0.4)


def _noisy_identity_factors(dim: int, rank: int, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Left (dim, rank) and right (rank, dim) factors whose product is the best rank-`rank`
    approximation of alpha * Z + beta * I, Z with N(0, 1/dim) entries (truncated SVD)."""
    target = alpha * torch.randn(dim, dim) / math.sqrt(dim) + beta * torch.eye(dim)
    U, S, Vh = torch.linalg.svd(target)
    root = S[:rank].sqrt()
    return U[:, :rank] * root, root[:, None] * Vh[:rank]


@torch.no_grad()
def mimetic_init_(attn: "Attention") -> None:
    """Draw attn's q/k/v/proj weights so that, at step 0, attention already looks like trained
    attention (Trockman & Kolter 2023): each head's query-key product is a noisy identity, so a
    token attends to tokens like itself (with position embeddings: to its neighbours, a soft
    local window), and value-projection is a noisy negative identity. Only the initial values
    change: no module, parameter or forward step is added. Biases stay zero.
    """
    dim, heads, head_dim = attn.proj.in_features, attn.num_heads, attn.head_dim
    w_q, w_k, w_v = attn.qkv.weight.chunk(3)  # each (dim, dim), rows grouped by head
    for h in range(heads):
        rows = slice(h * head_dim, (h + 1) * head_dim)
        # scores = x w_q[rows]^T w_k[rows] x^T, so w_q[rows]^T w_k[rows] is the target.
        left, right = _noisy_identity_factors(dim, head_dim, *MIMETIC_QK)
        w_q[rows] = left.T
        w_k[rows] = right
    # Through an identity attention map, out = x w_v^T proj^T: w_v^T proj^T is the target.
    left, right = _noisy_identity_factors(dim, dim, *MIMETIC_VO)
    w_v.copy_(left.T)
    attn.proj.weight.copy_(right.T)


class MLP(nn.Module):
    """Position-wise feed-forward: Linear-GELU-Dropout-Linear-Dropout (timm's Mlp names)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        if hidden < 1:  # an MLP of no hidden units outputs its bias, whatever its input
            raise ValueError(f"mlp_ratio={mlp_ratio} gives embed_dim {dim} an MLP of {hidden} hidden units")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)
        # vit_jax MlpBlock: xavier-uniform kernels, biases normal(std=1e-6).
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(head_dim)) V per head, then `proj`.

    impl="sdpa" calls PyTorch's fused scaled_dot_product_attention (fast, never stores the
    N x N probabilities); impl="manual" writes the formula out. Setting `store_attn = True`
    makes forward take the manual path and keep the probabilities in `last_attn`
    (B, heads, N, N), e.g. to draw class-token attention maps.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        impl: str = "sdpa",
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if impl not in ("manual", "sdpa"):
            raise ValueError(f"unknown attention impl {impl!r}; choose 'manual' or 'sdpa'")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.impl = impl
        self.store_attn = False
        self.last_attn: torch.Tensor | None = None
        self.qkv = nn.Linear(dim, 3 * dim)  # Q, K and V of all heads in one matmul
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)
        # vit_jax has separate query/key/value kernels, each xavier-uniform; biases zero.
        for kernel in self.qkv.weight.data.chunk(3):
            nn.init.xavier_uniform_(kernel)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        # (B, N, 3C) -> 3 x (B, heads, N, head_dim)
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.impl == "sdpa" and not self.store_attn:
            dropout_p = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            attn = attn.softmax(dim=-1)
            if self.store_attn:
                self.last_attn = attn.detach()
            x = self.attn_drop(attn) @ v
        x = x.transpose(1, 2).reshape(B, N, C)  # concatenate the heads
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-LN Transformer block, as in the ViT paper (and timm's Block).

    x = x + DropPath(Attn(LN1(x))); x = x + DropPath(MLP(LN2(x)))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        attn_impl: str = "sdpa",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, attn_dropout, dropout, attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        # Stochastic depth: drop the whole branch for a random subset of samples.
        # Parameter-free, so one instance serves both branches.
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class Blockv2(Block):
    """Parallel block, as in GPT-J, PaLM and ViT-22B.

    x = x + DropPath(Attn(LN1(x))) + DropPath(MLP(LN2(x)))

    Why: attention and MLP read the same input, so each block is one residual step instead
    of two; ViT-22B reports the same quality as the sequential block at scale (and faster
    training). The identity path and pre-LN stay as in Block, so it trains with the same
    hyper-parameters. Each branch keeps its own LayerNorm (ViT-22B shares one) so that the
    state_dict is Block's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.attn(self.norm1(x))) + self.drop_path(self.mlp(self.norm2(x)))


class Blockv3(Block):
    """MLP first: Block's two sub-layers in the opposite order.

    x = x + DropPath(MLP(LN2(x))); x = x + DropPath(Attn(LN1(x)))

    Why: the order of sub-layers is a design choice (Press et al. 2020 trained Transformers
    with many orders); here every patch is transformed on its own before any mixing (the first
    block acts as a deeper, non-linear patch embedding) and the last operation before the head
    is the attention that writes into the class token. Pre-LN branches keep Block's clean
    identity path, so it trains with Block's hyper-parameters. Rejected after short CPU runs
    on Imagenette: post-LN, x = LN(x + f(x)), stayed at chance at depth 12 (Adam, lr 1e-3,
    5% warmup); res-post-norm, x = x + LN(f(x)), feeds attention un-normalised inputs that
    grow with depth, so attention is near one-hot at init, and it trailed Block by 8 points.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x


BLOCKS = (Block, Blockv2, Blockv3)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, num_patches, C * p * p): non-overlapping patches, row-major.

    Each patch is flattened as (channel, row, col), the layout of a conv kernel, so a Linear
    on these vectors is exactly a Conv2d with kernel = stride = patch_size whose weight is
    the Linear weight viewed as (dim, C, p, p). One reshape-permute copy, then one matmul.
    """
    B, C, H, W = images.shape
    p = patch_size
    patches = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(B, (H // p) * (W // p), C * p * p)


def conv_stem(in_chans: int, width: int, patch_size: int) -> nn.Sequential:
    """Xiao et al. 2021 ("Early Convolutions Help Transformers See Better"): log2(patch_size)
    3x3 stride-2 convolutions, each with BatchNorm and ReLU, in place of one patch-sized cut.

    Widths double up to `width` (e.g. 96, 192 for patch 4 and width 192). Why: overlapping 3x3
    windows give the tokens a ConvNet's local prior, which a ViT trained on a small dataset does
    not learn by itself; the paper's own hybrid (its section 3.1) takes tokens from a ResNet's map.
    The final 1x1 convolution of Xiao et al. is the ViT's patch_embed Linear on these tokens.
    """
    num_convs = patch_size.bit_length() - 1
    if patch_size < 2 or patch_size != 1 << num_convs:
        raise ValueError(f"stem='conv' needs a patch_size that is a power of 2 (2, 4, 8, ...), got {patch_size}")
    if width < patch_size // 2:  # the first conv would have width >> (num_convs - 1) = 0 channels
        raise ValueError(f"stem='conv' with patch_size {patch_size} halves embed_dim={width} {num_convs - 1} times: "
                         f"it needs embed_dim at least {patch_size // 2}")
    widths = [width >> (num_convs - 1 - i) for i in range(num_convs)]
    layers: list[nn.Module] = []
    for c_in, c_out in zip([in_chans, *widths], widths):
        conv = conv3x3(c_in, c_out, stride=2)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def sincos_pos_embed(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings, MAE-style: (1 + grid_size**2, dim).

    Half of the channels encode the row, half the column, each as sin/cos at geometric
    frequencies (as in "Attention Is All You Need"). Row 0, the class token's, is zero.
    """
    if dim % 4:
        raise ValueError(f"sincos position embedding needs embed_dim divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.flatten()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    patches = torch.cat([encode(rows), encode(cols)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), patches]).float()


class ViT(nn.Module):
    """Vision Transformer classifier.

    pool="cls": classify the class token (the paper). pool="avg": classify the mean of the
    patch tokens; the class token stays in the sequence (unused by the head) so both pools
    have the same state_dict and attention maps stay comparable (timm's global_pool="avg"
    with class_token=True and fc_norm=False).
    pos_embed="learned": trainable, normal(0.02). "sincos": fixed buffer (still in the
    state_dict, so keys do not depend on the choice).
    init="jax": the paper's initialisation. "mimetic": attention weights drawn as
    mimetic_init_ describes (every other weight as "jax").
    stem="patch": the paper's linear projection of non-overlapping patches. "conv": conv_stem's
    strided 3x3 convolutions first, then patch_embed projects each position of their map.
    """

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 8,
        num_classes: int = 10,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        block: str | type[Block] = "Block",
        attn_impl: str = "sdpa",
        pool: str = "cls",
        pos_embed: str = "learned",
        init: str = "jax",
        stem: str = "patch",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        in_chans: int = 3,
    ):
        super().__init__()
        block = resolve_block(block, BLOCKS)
        sizes = dict(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                     in_chans=in_chans)
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1:  # img_size: square images only, one side
                raise ValueError(f"{name}={value!r} must be a whole number, at least 1")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        if pool not in ("cls", "avg"):
            raise ValueError(f"unknown pool {pool!r}; choose 'cls' or 'avg'")
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"unknown pos_embed {pos_embed!r}; choose 'learned' or 'sincos'")
        if init not in ("jax", "mimetic"):
            raise ValueError(f"unknown init {init!r}; choose 'jax' or 'mimetic'")
        if stem not in ("patch", "conv"):
            raise ValueError(f"unknown stem {stem!r}; choose 'patch' or 'conv'")
        # drop_path: the deepest block's rate, found only at the first training step otherwise; the dropouts:
        # nn.Dropout's own message would not say which of the two is wrong.
        for name, rate in (("dropout", dropout), ("attn_dropout", attn_dropout), ("drop_path", drop_path)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name}={rate!r} must lie in [0, 1]")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.pool = pool
        grid_size = img_size // patch_size

        # Linear projection of flattened patches (see patchify), or of the conv stem's channels;
        # lecun-normal like the paper's patch-embedding conv.
        self.conv_stem = conv_stem(in_chans, embed_dim, patch_size) if stem == "conv" else None
        token_features = embed_dim if stem == "conv" else in_chans * patch_size**2
        self.patch_embed = nn.Linear(token_features, embed_dim)
        lecun_normal_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.empty(1, 1 + grid_size**2, embed_dim).normal_(std=0.02))
        else:
            self.register_buffer("pos_embed", sincos_pos_embed(embed_dim, grid_size)[None])
        self.pos_drop = nn.Dropout(dropout)

        # Stochastic depth rate grows linearly from 0 (first block) to drop_path (last), as DeiT.
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
        self.blocks = nn.Sequential(
            *(block(embed_dim, num_heads, mlp_ratio, dropout, attn_dropout, rate, attn_impl) for rate in rates)
        )
        if init == "mimetic":
            for blk in self.blocks:
                mimetic_init_(blk.attn)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        # Zero head (big_vision): every class starts with logit 0, i.e. a uniform prediction.
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters that timm's optimizer factory excludes from weight decay."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised tokens (B, 1 + num_patches, dim); token 0 is the class token."""
        expected = (self.in_chans, self.img_size, self.img_size)
        if images.ndim != 4 or images.shape[1:] != expected:  # else a matmul or unpacking error deep inside
            raise ValueError(f"expected a batch of {self.in_chans}-channel {self.img_size}x{self.img_size} images "
                             f"(B, {', '.join(map(str, expected))}), got shape {tuple(images.shape)}")
        if self.conv_stem is None:
            tokens = self.patch_embed(patchify(images, self.patch_size))
        else:
            tokens = self.patch_embed(self.conv_stem(images).flatten(2).transpose(1, 2))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = self.pos_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)
        return self.norm(self.blocks(tokens))

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1 + num_patches, dim) -> (B, dim): the class token, or the mean of the patch tokens."""
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool_tokens(self.forward_features(images)))

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every block, each (B, heads, 1 + N, 1 + N).

        Row 0 of each map is where the class token looks; reshape row 0, columns 1: to the
        patch grid to draw it. Computed in eval mode (the mode is restored after): in training
        mode dropout would make the maps random and the conv stem's BatchNorms would take
        their statistics from the images being drawn.
        """
        attns = [blk.attn for blk in self.blocks]
        was_training = self.training
        self.eval()
        for attn in attns:
            attn.store_attn = True
        try:
            self(images)
            return [attn.last_attn for attn in attns]
        finally:
            self.train(was_training)
            for attn in attns:
                attn.store_attn = False
                attn.last_attn = None
