/* Triple fault: #UD with an IDT that has no usable gate escalates to shutdown. */
.intel_syntax noprefix
.code64
.text
.global _start
_start:
    lea rsi, [rip + msg]
    call puts
    ud2
.section .rodata
msg: .asciz "isola-guest: start triple_fault\n"
