# isotool's KVM probe: a boot sector that goes through the CPU modes installer boot code uses.
.intel_syntax noprefix
.code16
.org 0
start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov dx, 0x3f8
    mov al, 'R'
    out dx, al
    fninit
    fwait
    # TSS at 0x5000: 104 bytes + I/O bitmap (128 bytes, all ports < 0x400 allowed) + 0xff
    mov di, 0x5000
    mov cx, 240
    xor al, al
    rep stosb
    mov word ptr [0x5000 + 102], 104
    mov byte ptr [0x5000 + 232], 0xff
    mov dword ptr [0x5000 + 4], 0x6800
    mov word ptr [0x5000 + 8], 0x10
    lgdt [0x7c00 + gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xea
    .long 0x7c00 + pm32
    .word 0x08
.code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov dx, 0x3f8
    mov al, 'P'
    out dx, al
    fninit
    fwait
    mov ax, 0x18
    ltr ax
    push 0
    push 0
    push 0
    push 0
    push 0
    push 0x6000
    push 0x00023002
    push 0
    push offset v86 + 0x7c00
    iretd
.code16
v86:
    mov dx, 0x3f8
    mov si, offset msg + 0x7c00
1:  mov al, [si]
    test al, al
    jz 2f
    out dx, al
    inc si
    jmp 1b
2:  mov dx, 0xf4
    mov al, 0x10
    out dx, al
3:  jmp 3b
msg:
    .asciz "V\nISOTOOL-KVM-PROBE-OK\n"
.p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .word 232, 0x5000
    .byte 0, 0x89, 0, 0
gdt_desc:
    .word gdt_desc - gdt - 1
    .long 0x7c00 + gdt
.org 510
    .byte 0x55, 0xaa
