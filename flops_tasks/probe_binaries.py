"""Two tiny static programs that print the machine they run as (`uname -m`).

They let a worker prove that foreign-architecture binaries really run through QEMU user
emulation without downloading anything: the command carries the program as base64.
Each is one ELF64 header, one R+X PT_LOAD at 0x400000 (entry 0x400078) and this code:

    // arm64 (EM_AARCH64)                  # amd64 (EM_X86_64), same logic
    _start: sub  sp, sp, #400              #   sub $400,%rsp; mov %rsp,%rdi; mov $63,%eax; syscall
            mov  x0, sp                    #   lea 260(%rsp),%rsi; xor %edx,%edx
            mov  x8, #160      // uname    # 1: cmpb $0,(%rsi,%rdx); je 2f; inc %rdx; jmp 1b
            svc  #0                        # 2: movb $10,(%rsi,%rdx); inc %rdx; mov $1,%edi
            add  x1, sp, #260  // .machine #   mov $1,%eax; syscall; xor %edi,%edi; mov $60,%eax
            mov  x2, #0                    #   syscall
    1:      ldrb w3, [x1, x2]
            cbz  w3, 2f
            add  x2, x2, #1
            b    1b
    2:      mov  w3, #10
            strb w3, [x1, x2]
            add  x2, x2, #1
            mov  x0, #1
            mov  x8, #64       // write
            svc  #0
            mov  x0, #0
            mov  x8, #93       // exit
            svc  #0
"""

UNAME_ARM64_B64 = (
    "f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEA"
    "AAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAxAAAAAAAAADEAAAAAAAAAAAQAAAAAAAA/0MG0eADAJEIFIDS"
    "AQAA1OETBJECAIDSI2hiOGMAADRCBACR/f//F0MBgFIjaCI4QgQAkSAAgNIICIDSAQAA1AAAgNKoC4DSAQAA1A=="
)
UNAME_AMD64_B64 = (
    "f0VMRgIBAQAAAAAAAAAAAAIAPgABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEA"
    "AAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAugAAAAAAAAC6AAAAAAAAAAAQAAAAAAAASIHskAEAAEiJ57g/"
    "AAAADwVIjbQkBAEAADHSgDwWAHQFSP/C6/XGBBYKSP/CvwEAAAC4AQAAAA8FMf+4PAAAAA8F"
)

# machine name as uname -m prints it -> (docker platform, probe program of that machine)
MACHINES = {
    "aarch64": ("linux/arm64", UNAME_ARM64_B64),
    "x86_64": ("linux/amd64", UNAME_AMD64_B64),
}
