#include "textflag.h"

// Layout of polyPowers (poly.go): r8 limbs at 0..32 (r0 r1 r2 s1 s2), then
// pow[k] (8 lanes each) at 40 + 64·k.
#define OFFR8 0
#define OFFPOW 40

// MULR multiplies the lanes' numbers x (Z0, Z1, Z2: limbs of 44, 44, 42
// bits, each below 2^52) by r (limbs r0, r1, r2 and s1 = 20·r1, s2 = 20·r2
// in the given registers) modulo 2^130-5, with 2^132 ≡ 20: the result's
// limbs go back to Z0..Z2, limb 0 below 2^44, limb 1 a little above,
// limb 2 below 2^42 + small. Clobbers Z3..Z9.
#define MULR(r0, r1, r2, s1, s2) \
	VPXORQ Z3, Z3, Z3 \
	VPXORQ Z4, Z4, Z4 \
	VPXORQ Z5, Z5, Z5 \
	VPXORQ Z6, Z6, Z6 \
	VPXORQ Z7, Z7, Z7 \
	VPXORQ Z8, Z8, Z8 \
	VPMADD52LUQ r0, Z0, Z3 \
	VPMADD52HUQ r0, Z0, Z4 \
	VPMADD52LUQ s2, Z1, Z3 \
	VPMADD52HUQ s2, Z1, Z4 \
	VPMADD52LUQ s1, Z2, Z3 \
	VPMADD52HUQ s1, Z2, Z4 \
	VPMADD52LUQ r1, Z0, Z5 \
	VPMADD52HUQ r1, Z0, Z6 \
	VPMADD52LUQ r0, Z1, Z5 \
	VPMADD52HUQ r0, Z1, Z6 \
	VPMADD52LUQ s2, Z2, Z5 \
	VPMADD52HUQ s2, Z2, Z6 \
	VPMADD52LUQ r2, Z0, Z7 \
	VPMADD52HUQ r2, Z0, Z8 \
	VPMADD52LUQ r1, Z1, Z7 \
	VPMADD52HUQ r1, Z1, Z8 \
	VPMADD52LUQ r0, Z2, Z7 \
	VPMADD52HUQ r0, Z2, Z8 \
	VPANDQ Z27, Z3, Z0 \
	VPSRLQ $44, Z3, Z3 \
	VPSLLQ $8, Z4, Z4 \
	VPADDQ Z4, Z3, Z3 \
	VPADDQ Z3, Z5, Z5 \
	VPANDQ Z27, Z5, Z1 \
	VPSRLQ $44, Z5, Z5 \
	VPSLLQ $8, Z6, Z6 \
	VPADDQ Z6, Z5, Z5 \
	VPADDQ Z5, Z7, Z7 \
	VPANDQ Z28, Z7, Z2 \
	VPSRLQ $42, Z7, Z7 \
	VPSLLQ $10, Z8, Z8 \
	VPADDQ Z8, Z7, Z7 \
	VPSLLQ $2, Z7, Z9 \
	VPADDQ Z9, Z7, Z7 \
	VPADDQ Z7, Z0, Z0 \
	VPSRLQ $44, Z0, Z9 \
	VPANDQ Z27, Z0, Z0 \
	VPADDQ Z9, Z1, Z1

// func polyBlocks(st *polyVec, pp *polyPowers, p *byte, groups int)
//
// Z0..Z2 the lanes' accumulators; Z20..Z24 r^8 (broadcast); Z25, Z26 the
// qword indices that gather the blocks' low and high halves; Z27, Z28 the
// 44- and 42-bit masks; Z29 the 2^128 pad bit in limb 2.
TEXT ·polyBlocks(SB), NOSPLIT, $0-32
	MOVQ st+0(FP), DI
	MOVQ pp+8(FP), R8
	MOVQ p+16(FP), SI
	MOVQ groups+24(FP), CX

	VMOVDQU64 0(DI), Z0
	VMOVDQU64 64(DI), Z1
	VMOVDQU64 128(DI), Z2
	VPBROADCASTQ OFFR8+0(R8), Z20
	VPBROADCASTQ OFFR8+8(R8), Z21
	VPBROADCASTQ OFFR8+16(R8), Z22
	VPBROADCASTQ OFFR8+24(R8), Z23
	VPBROADCASTQ OFFR8+32(R8), Z24
	// Z25 = {0,2,4,...,14}, Z26 = {1,3,...,15}
	LEAQ idx<>(SB), AX
	VMOVDQU64 0(AX), Z25
	VMOVDQU64 64(AX), Z26
	MOVQ $0xFFFFFFFFFFF, AX
	VPBROADCASTQ AX, Z27
	MOVQ $0x3FFFFFFFFFF, AX
	VPBROADCASTQ AX, Z28
	MOVQ $0x10000000000, AX
	VPBROADCASTQ AX, Z29

loop:
	// the eight blocks' low and high qwords, one block per lane
	VMOVDQU64 0(SI), Z10
	VMOVDQU64 64(SI), Z11
	VMOVDQA64 Z25, Z12
	VPERMI2Q Z11, Z10, Z12
	VMOVDQA64 Z26, Z13
	VPERMI2Q Z11, Z10, Z13
	// limbs: lo & m44, (lo>>44 | hi<<20) & m44, hi>>24 | 2^40
	VPANDQ Z27, Z12, Z14
	VPSRLQ $44, Z12, Z16
	VPSLLQ $20, Z13, Z17
	VPTERNLOGQ $0xA8, Z27, Z17, Z16
	VPSRLQ $24, Z13, Z17
	VPORQ Z29, Z17, Z17
	VPADDQ Z14, Z0, Z0
	VPADDQ Z16, Z1, Z1
	VPADDQ Z17, Z2, Z2
	ADDQ $128, SI
	DECQ CX
	JZ last
	MULR(Z20, Z21, Z22, Z23, Z24)
	JMP loop

last:
	// lane j times r^(8-j)
	VMOVDQU64 OFFPOW+0(R8), Z20
	VMOVDQU64 OFFPOW+64(R8), Z21
	VMOVDQU64 OFFPOW+128(R8), Z22
	VMOVDQU64 OFFPOW+192(R8), Z23
	VMOVDQU64 OFFPOW+256(R8), Z24
	MULR(Z20, Z21, Z22, Z23, Z24)
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VZEROUPPER
	RET

DATA idx<>+0(SB)/8, $0
DATA idx<>+8(SB)/8, $2
DATA idx<>+16(SB)/8, $4
DATA idx<>+24(SB)/8, $6
DATA idx<>+32(SB)/8, $8
DATA idx<>+40(SB)/8, $10
DATA idx<>+48(SB)/8, $12
DATA idx<>+56(SB)/8, $14
DATA idx<>+64(SB)/8, $1
DATA idx<>+72(SB)/8, $3
DATA idx<>+80(SB)/8, $5
DATA idx<>+88(SB)/8, $7
DATA idx<>+96(SB)/8, $9
DATA idx<>+104(SB)/8, $11
DATA idx<>+112(SB)/8, $13
DATA idx<>+120(SB)/8, $15
GLOBL idx<>(SB), RODATA|NOPTR, $128
