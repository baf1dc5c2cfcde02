/* Boot check: reports what the VMM promised at entry, for the host test to compare.
 * Built twice: without -DPVH it is entered through the 64-bit Linux boot protocol
 * (long mode, %rsi = zero page); with -DPVH it carries the Xen PVH note and is
 * entered in 32-bit protected mode with %ebx = hvm_start_info, switching to long
 * mode with its own static page tables.
 * Output lines: "<name> <hex>", "e820 ...", "cmdline <text>", "cpuid-hv <sig>". */
.intel_syntax noprefix

#ifdef PVH
.section .note.Xen, "a", @note
.balign 4
.long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
.asciz "Xen"
.balign 4
.long pvh_start
.balign 4

.text
.code32
pvh_start:
    mov edi, ebx                    /* keep the start info */
    mov esp, 0x8ff0
    mov eax, offset pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20                    /* PAE */
    mov cr4, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100                   /* LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80000000              /* PG */
    mov cr0, eax
    lgdt [gdt64_ptr]
    push 0x08
    push offset long_entry
    retf

.code64
long_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    lea rsi, [rip + msg_start]
    call puts
    lea rsi, [rip + s_pvh]
    mov eax, dword ptr [rdi]        /* magic */
    call field
    lea rsi, [rip + s_info]
    mov rax, rdi
    call field
    mov r12, qword ptr [rdi + 40]   /* memmap_paddr */
    mov r13d, dword ptr [rdi + 48]  /* memmap_entries */
    mov r14, qword ptr [rdi + 24]   /* cmdline_paddr */
    mov r15d, 24                    /* entry stride */
    jmp common

.data
.balign 4096
pml4: .quad pdpt + 3
      .fill 511, 8, 0
pdpt: .quad pd0 + 3, 0, 0, pd3 + 3
      .fill 508, 8, 0
pd0:  .quad 0x83                    /* 0-2 MiB */
      .fill 511, 8, 0
pd3:  .fill 0x80, 8, 0
      .quad 0xd0000000 + 0x83       /* the boot timer's 2 MiB */
      .fill 511 - 0x80, 8, 0
.balign 8
gdt64: .quad 0, 0x00af9b000000ffff, 0x00cf93000000ffff
gdt64_ptr: .word 23
           .long gdt64
#endif

.text
.code64
.global _start
_start:
#ifndef PVH
    mov rdi, rsi                    /* zero page */
    lea rsi, [rip + msg_start]
    call puts
    lea rsi, [rip + s_zp]
    mov rax, rdi
    call field
    lea rsi, [rip + s_hdrs]
    mov eax, dword ptr [rdi + 0x202]
    call field
    lea r12, [rdi + 0x2d0]          /* e820_table */
    movzx r13d, byte ptr [rdi + 0x1e8]
    mov r14d, dword ptr [rdi + 0x228] /* cmd_line_ptr */
    mov r15d, 20
#else
    jmp pvh_start                   /* never taken: PVH enters at pvh_start */
#endif

common:
    lea rsi, [rip + s_rsp]
    mov rax, rsp
    call field
    lea rsi, [rip + s_cr0]
    mov rax, cr0
    call field
    lea rsi, [rip + s_cr3]
    mov rax, cr3
    call field
    lea rsi, [rip + s_cr4]
    mov rax, cr4
    call field
    lea rsi, [rip + s_efer]
    mov ecx, 0xc0000080
    rdmsr
    shl rdx, 32
    or rax, rdx
    call field
    lea rsi, [rip + s_e820n]
    mov eax, r13d
    call field
e820_loop:
    test r13d, r13d
    jz e820_done
    lea rsi, [rip + s_e820]
    call puts
    mov al, ' '
    call putc
    mov rax, qword ptr [r12]
    call puthex
    mov al, ' '
    call putc
    mov rax, qword ptr [r12 + 8]
    call puthex
    mov al, ' '
    call putc
    mov eax, dword ptr [r12 + 16]
    call puthex
    mov al, '\n'
    call putc
    add r12, r15
    dec r13d
    jmp e820_loop
e820_done:
    lea rsi, [rip + s_cmdline]
    call puts
    mov rsi, r14
    call puts
    mov al, '\n'
    call putc
    /* KVM's signature leaf, exactly as the VMM passed it through */
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    mov dword ptr [rip + sig], ebx
    mov dword ptr [rip + sig + 4], ecx
    mov dword ptr [rip + sig + 8], edx
    lea rsi, [rip + s_hvmax]
    call field
    lea rsi, [rip + s_sig]
    call puts
    lea rsi, [rip + sig]
    call puts
    mov al, '\n'
    call putc
    mov eax, 1
    xor ecx, ecx
    cpuid
    mov r12, rcx
    lea rsi, [rip + s_leaf1b]
    mov eax, ebx
    call field
    lea rsi, [rip + s_leaf1c]
    mov rax, r12
    call field
    /* the identity map must reach the MMIO gap: this write needs it */
#ifdef IDLE
    /* Stay alive without using CPU, for memory measurements. */
    jmp idle
#else
    jmp finish
#endif

.section .rodata
#ifdef PVH
msg_start: .asciz "isola-guest: start boot_check pvh\n"
#else
msg_start: .asciz "isola-guest: start boot_check linux64\n"
#endif
s_pvh:     .asciz "pvh-magic"
s_info:    .asciz "pvh-info"
s_zp:      .asciz "zero-page"
s_hdrs:    .asciz "hdrs"
s_rsp:     .asciz "rsp"
s_cr0:     .asciz "cr0"
s_cr3:     .asciz "cr3"
s_cr4:     .asciz "cr4"
s_efer:    .asciz "efer"
s_e820n:   .asciz "e820-count"
s_e820:    .asciz "e820"
s_cmdline: .asciz "cmdline "
s_hvmax:   .asciz "cpuid-hv-max"
s_sig:     .asciz "cpuid-hv "
s_leaf1b:  .asciz "cpuid1-ebx"
s_leaf1c:  .asciz "cpuid1-ecx"

.data
sig: .fill 16, 1, 0
