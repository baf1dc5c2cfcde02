/* Serial output helpers shared by the test guests (64-bit, COM1 at 0x3f8). */
.intel_syntax noprefix
.code64
.text

/* puts: print the NUL-terminated string at rsi. Clobbers rax, rdx, rsi. */
.global puts
puts:
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret

/* puthex: print rax as 16 hex digits. Clobbers rax, rbx, rcx, rdx. */
.global puthex
puthex:
    mov rbx, rax
    mov rcx, 16
    mov dx, 0x3f8
1:  rol rbx, 4
    mov al, bl
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe 2f
    add al, 39
2:  out dx, al
    loop 1b
    ret

/* putc: print al. */
.global putc
putc:
    mov dx, 0x3f8
    out dx, al
    ret

/* field: print the label at rsi, a space, rax in hex, and a newline. */
.global field
field:
    push rax
    call puts
    mov al, ' '
    call putc
    pop rax
    call puthex
    mov al, '\n'
    call putc
    ret

/* finish: boot-timer write, final marker, then reset via the i8042. */
.global finish
finish:
    mov eax, 0xd0000000             /* zero-extended: a disp32 would sign-extend */
    mov dword ptr [rax], 123
    lea rsi, [rip + msg_done]
    call puts
    mov al, 0xfe
    out 0x64, al
3:  hlt
    jmp 3b

.section .rodata
msg_done: .asciz "isola-guest: done\n"
