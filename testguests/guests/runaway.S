/* Runaway: never halts, never exits; only the VMM's timeout can end it. */
.intel_syntax noprefix
.code64
.text
.global _start
_start:
    lea rsi, [rip + msg]
    call puts
spin:
    jmp spin
.section .rodata
msg: .asciz "isola-guest: start runaway\n"
