#include "textflag.h"

// Offsets in vecConsts (lanes.go).
#define TOP 0
#define OUT 56
#define IN 112
#define IDXA 128
#define IDXB 192
#define BYTT 256
#define LOW0 320
#define LOW2 328

// TRANSPOSE8 transposes the 8×8 qwords of Z16..Z23 (rows) into Z24..Z31
// (Z24+c holds column c). Clobbers Z16..Z23.
#define TRANSPOSE8 \
	VPUNPCKLQDQ Z17, Z16, Z24 \
	VPUNPCKHQDQ Z17, Z16, Z25 \
	VPUNPCKLQDQ Z19, Z18, Z26 \
	VPUNPCKHQDQ Z19, Z18, Z27 \
	VPUNPCKLQDQ Z21, Z20, Z28 \
	VPUNPCKHQDQ Z21, Z20, Z29 \
	VPUNPCKLQDQ Z23, Z22, Z30 \
	VPUNPCKHQDQ Z23, Z22, Z31 \
	VMOVDQU64 IDXA(R8), Z16 \
	VPERMI2Q Z26, Z24, Z16 \
	VMOVDQU64 IDXB(R8), Z18 \
	VPERMI2Q Z26, Z24, Z18 \
	VMOVDQU64 IDXA(R8), Z17 \
	VPERMI2Q Z27, Z25, Z17 \
	VMOVDQU64 IDXB(R8), Z19 \
	VPERMI2Q Z27, Z25, Z19 \
	VMOVDQU64 IDXA(R8), Z20 \
	VPERMI2Q Z30, Z28, Z20 \
	VMOVDQU64 IDXB(R8), Z22 \
	VPERMI2Q Z30, Z28, Z22 \
	VMOVDQU64 IDXA(R8), Z21 \
	VPERMI2Q Z31, Z29, Z21 \
	VMOVDQU64 IDXB(R8), Z23 \
	VPERMI2Q Z31, Z29, Z23 \
	VSHUFI64X2 $0x44, Z20, Z16, Z24 \
	VSHUFI64X2 $0xEE, Z20, Z16, Z28 \
	VSHUFI64X2 $0x44, Z21, Z17, Z25 \
	VSHUFI64X2 $0xEE, Z21, Z17, Z29 \
	VSHUFI64X2 $0x44, Z22, Z18, Z26 \
	VSHUFI64X2 $0xEE, Z22, Z18, Z30 \
	VSHUFI64X2 $0x44, Z23, Z19, Z27 \
	VSHUFI64X2 $0xEE, Z23, Z19, Z31

// PLANE computes plane j (Zj) of the next state from the old planes j and
// j-1: Zj = top_j(t) ^ Z(j-1) ^ out_j(o), with t in Z16, o in Z18.
#define PLANE(zj, zprev, mtop, outoff) \
	VGF2P8AFFINEQB $0, mtop, Z16, zj \
	VGF2P8AFFINEQB.BCST $0, outoff(R8), Z18, Z19 \
	VPTERNLOGD $0x96, Z19, zprev, zj

// STEP advances the 64 chains by one byte: the entering bytes are row
// off(R12), the leaving ones row off(R13). Z23 keeps the minimum over the
// steps of each chain's (low 20 bits of d), which is zero after a hit.
#define STEP(off) \
	VMOVDQA64 Z6, Z16 \
	VMOVDQU64 off(R12), Z17 \
	VMOVDQU64 off(R13), Z18 \
	PLANE(Z6, Z5, Z13, OUT+48) \
	PLANE(Z5, Z4, Z12, OUT+40) \
	PLANE(Z4, Z3, Z11, OUT+32) \
	PLANE(Z3, Z2, Z10, OUT+24) \
	PLANE(Z2, Z1, Z9, OUT+16) \
	VGF2P8AFFINEQB $0, Z8, Z16, Z1 \
	VGF2P8AFFINEQB.BCST $0, OUT+8(R8), Z18, Z19 \
	VGF2P8AFFINEQB.BCST $0, IN+8(R8), Z17, Z20 \
	VPTERNLOGD $0x96, Z19, Z0, Z1 \
	VPXORQ Z20, Z1, Z1 \
	VGF2P8AFFINEQB $0, Z7, Z16, Z0 \
	VGF2P8AFFINEQB.BCST $0, OUT(R8), Z18, Z19 \
	VGF2P8AFFINEQB.BCST $0, IN(R8), Z17, Z20 \
	VPTERNLOGD $0x96, Z20, Z19, Z0 \
	VMOVDQA64 Z1, Z21 \
	VPTERNLOGD $0xF8, Z14, Z0, Z21 \
	VPTERNLOGD $0xF8, Z15, Z2, Z21 \
	VPMINUB Z21, Z23, Z23

// func vecHits(c *vecConsts, stream *byte, stride, blocks int, scratch *byte) uint64
//
// Registers: Z0..Z6 the planes of the 64 chains; Z7..Z13 the top matrices
// and Z14, Z15 the masks of d's low bits while stepping (Z7 the byte
// transpose indices while transposing); Z16..Z31 temporaries. R8 c, SI the
// current block of chain 0, DI stride, CX blocks left, R9 the transpose
// buffer, R10 this block's rows, R11 the previous block's, DX 1 during the
// warm-up block, K2 the chains with a hit.
TEXT ·vecHits(SB), NOSPLIT, $0-48
	MOVQ c+0(FP), R8
	MOVQ stream+8(FP), SI
	MOVQ stride+16(FP), DI
	MOVQ blocks+24(FP), CX
	MOVQ scratch+32(FP), R9
	LEAQ 4096(R9), R10
	LEAQ 8192(R9), R11

	// The warm-up block's leaving bytes are zeros (the window starts
	// empty), and so is the state.
	VPXORQ Z0, Z0, Z0
	MOVQ R11, R12
	MOVQ $64, AX
zero:
	VMOVDQU64 Z0, (R12)
	ADDQ $64, R12
	DECQ AX
	JNZ zero
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	KXORQ K2, K2, K2
	MOVQ $1, DX

block:
	// Level A: for each group of 8 chains, transpose their 8×64 bytes
	// into 8 registers of (8 steps × 8 chains) and store them at
	// R9 + (s·8 + g)·64 for step group s.
	VMOVDQU64 BYTT(R8), Z7
	MOVQ SI, R12
	MOVQ R9, R13
	MOVQ $8, AX
levelA:
	MOVQ R12, BX
	VMOVDQU64 (BX), Z16
	ADDQ DI, BX
	VMOVDQU64 (BX), Z17
	ADDQ DI, BX
	VMOVDQU64 (BX), Z18
	ADDQ DI, BX
	VMOVDQU64 (BX), Z19
	ADDQ DI, BX
	VMOVDQU64 (BX), Z20
	ADDQ DI, BX
	VMOVDQU64 (BX), Z21
	ADDQ DI, BX
	VMOVDQU64 (BX), Z22
	ADDQ DI, BX
	VMOVDQU64 (BX), Z23
	ADDQ DI, BX
	MOVQ BX, R12
	TRANSPOSE8
	VPERMB Z24, Z7, Z24
	VPERMB Z25, Z7, Z25
	VPERMB Z26, Z7, Z26
	VPERMB Z27, Z7, Z27
	VPERMB Z28, Z7, Z28
	VPERMB Z29, Z7, Z29
	VPERMB Z30, Z7, Z30
	VPERMB Z31, Z7, Z31
	VMOVDQU64 Z24, 0(R13)
	VMOVDQU64 Z25, 512(R13)
	VMOVDQU64 Z26, 1024(R13)
	VMOVDQU64 Z27, 1536(R13)
	VMOVDQU64 Z28, 2048(R13)
	VMOVDQU64 Z29, 2560(R13)
	VMOVDQU64 Z30, 3072(R13)
	VMOVDQU64 Z31, 3584(R13)
	ADDQ $64, R13
	DECQ AX
	JNZ levelA

	// Level B: for each step group, transpose the 8 groups' qwords into
	// the rows of its 8 steps (byte k of a row is chain k's byte).
	MOVQ R9, R13
	MOVQ R10, R12
	MOVQ $8, AX
levelB:
	VMOVDQU64 0(R13), Z16
	VMOVDQU64 64(R13), Z17
	VMOVDQU64 128(R13), Z18
	VMOVDQU64 192(R13), Z19
	VMOVDQU64 256(R13), Z20
	VMOVDQU64 320(R13), Z21
	VMOVDQU64 384(R13), Z22
	VMOVDQU64 448(R13), Z23
	TRANSPOSE8
	VMOVDQU64 Z24, 0(R12)
	VMOVDQU64 Z25, 64(R12)
	VMOVDQU64 Z26, 128(R12)
	VMOVDQU64 Z27, 192(R12)
	VMOVDQU64 Z28, 256(R12)
	VMOVDQU64 Z29, 320(R12)
	VMOVDQU64 Z30, 384(R12)
	VMOVDQU64 Z31, 448(R12)
	ADDQ $512, R13
	ADDQ $512, R12
	DECQ AX
	JNZ levelB

	// 64 steps over this block's rows and the previous block's.
	VPBROADCASTQ TOP+0(R8), Z7
	VPBROADCASTQ TOP+8(R8), Z8
	VPBROADCASTQ TOP+16(R8), Z9
	VPBROADCASTQ TOP+24(R8), Z10
	VPBROADCASTQ TOP+32(R8), Z11
	VPBROADCASTQ TOP+40(R8), Z12
	VPBROADCASTQ TOP+48(R8), Z13
	VPBROADCASTQ LOW0(R8), Z14
	VPBROADCASTQ LOW2(R8), Z15
	VPTERNLOGD $0xFF, Z23, Z23, Z23
	MOVQ R10, R12
	MOVQ R11, R13
	MOVQ $8, AX
steps:
	STEP(0)
	STEP(64)
	STEP(128)
	STEP(192)
	STEP(256)
	STEP(320)
	STEP(384)
	STEP(448)
	ADDQ $512, R12
	ADDQ $512, R13
	DECQ AX
	JNZ steps

	VPTESTNMB Z23, Z23, K1
	TESTQ DX, DX
	JNZ warm
	KORQ K1, K2, K2
warm:
	XORQ DX, DX
	XCHGQ R10, R11
	ADDQ $64, SI
	DECQ CX
	JNZ block

	KMOVQ K2, AX
	MOVQ AX, ret+40(FP)
	VPXORQ Z15, Z15, Z15 // Go code expects X15 zero (the ABI wrapper re-zeroes it too)
	VZEROUPPER
	RET
