/* idle: says so, writes the boot timer, then halts with interrupts off for good, so a
 * benchmark can measure a VMM's memory with a live guest that costs no CPU. Linked
 * into boot_check built with -DIDLE (which jumps here instead of finishing), so it
 * boots by the same PVH entry under isola-vmm and QEMU. */
.intel_syntax noprefix
.code64
.text
.global idle
idle:
    lea rsi, [rip + msg]
    call puts
    mov eax, 0xd0000000
    mov dword ptr [rax], 1
    cli
1:  hlt
    jmp 1b
.section .rodata
msg: .asciz "isola-guest: idle\n"
