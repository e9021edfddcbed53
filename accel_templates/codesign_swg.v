// Sliding-window generator (FINN: ConvolutionInputGenerator), NHWC, SIMD channels per word.
//
// (IH, IW, C) -> (OH, OW, KH*KW*C), element order (ky, kx, c), c innermost.
// Line buffer of BR = pow2 >= KH + SH rows, each row padded to a power-of-two number of words
// so an address is just {row slot, word-in-row} (no multipliers in the address path).
// The write side and the read side run decoupled: the writer may fill row w only while
// w < (top row of the window being read) + BR, and the reader starts an output pixel only when
// every word it needs has been written. Row counters are global (they continue across frames),
// so the next frame streams in while the last windows of the current one are read out.
// The read data register of the synchronous buffer IS the output register; the read side
// advances only on adv (output empty or taken).
module codesign_swg #(
    parameter integer IH = 4,
    parameter integer IW = 4,
    parameter integer C = 1,
    parameter integer SIMD = 1,
    parameter integer KH = 2,
    parameter integer KW = 2,
    parameter integer SH = 1,
    parameter integer SW = 1,
    parameter integer BITS = 8,
    parameter integer OH = (IH - KH) / SH + 1,
    parameter integer OW = (IW - KW) / SW + 1,
    parameter integer CF = C / SIMD,
    parameter integer RW = IW * CF,
    parameter integer RWB = (RW > 1) ? $clog2(RW) : 1,
    parameter integer BRB = $clog2(KH + SH),
    parameter integer WW = SIMD * BITS
) (
    input  wire          ap_clk,
    input  wire          ap_rst_n,
    input  wire [WW-1:0] in0_V_TDATA,
    input  wire          in0_V_TVALID,
    output wire          in0_V_TREADY,
    output reg  [WW-1:0] out_V_TDATA,
    output reg           out_V_TVALID,
    input  wire          out_V_TREADY
);
    localparam integer BR = 1 << BRB;
    localparam integer KWC = KW * CF;

    reg [WW-1:0] mem [0:BR*(1<<RWB)-1];

    // ---------------- write side ----------------
    reg [31:0] w_row;          // global row being written
    reg [RWB-1:0] w_wi;        // word index within that row
    reg [31:0] r_base;         // global top row of the window being read
    wire w_ok = (w_row < r_base + BR);
    assign in0_V_TREADY = w_ok;
    wire w_fire = w_ok && in0_V_TVALID;
    wire [BRB-1:0] w_slot = w_row[BRB-1:0];

    always @(posedge ap_clk) begin
        if (w_fire) mem[{w_slot, w_wi}] <= in0_V_TDATA;
    end

    // ---------------- read side ----------------
    reg [31:0] f_base;         // global first row of the frame being read
    reg [15:0] oy, ox, ky;
    reg [15:0] koff;           // kx*CF + cf within the current kernel row
    reg [RWB:0] pix_base;      // ox*SW*CF
    wire pix_start = (ky == 0) && (koff == 0);
    wire [31:0] need_row = r_base + KH - 1;
    wire [RWB+16:0] need_wi = pix_base + KWC;
    wire have = (w_row > need_row) || ((w_row == need_row) && ({1'b0, w_wi} >= need_wi));
    wire adv = !out_V_TVALID || out_V_TREADY;
    wire r_fire = adv && (!pix_start || have);
    wire [31:0] r_row = r_base + ky;
    wire [RWB-1:0] r_wi = pix_base + koff;

    always @(posedge ap_clk) begin
        if (adv) out_V_TDATA <= mem[{r_row[BRB-1:0], r_wi}];
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            w_row <= 0; w_wi <= 0;
            r_base <= 0; f_base <= 0;
            oy <= 0; ox <= 0; ky <= 0; koff <= 0; pix_base <= 0;
            out_V_TVALID <= 1'b0;
        end else begin
            if (w_fire) begin
                if (w_wi == RW - 1) begin
                    w_wi <= 0;
                    w_row <= w_row + 1;
                end else begin
                    w_wi <= w_wi + 1'b1;
                end
            end
            if (adv) out_V_TVALID <= r_fire;
            if (r_fire) begin
                if (koff == KWC - 1) begin
                    koff <= 0;
                    if (ky == KH - 1) begin
                        ky <= 0;
                        if (ox == OW - 1) begin
                            ox <= 0;
                            pix_base <= 0;
                            if (oy == OH - 1) begin
                                oy <= 0;
                                r_base <= f_base + IH;
                                f_base <= f_base + IH;
                            end else begin
                                oy <= oy + 1'b1;
                                r_base <= r_base + SH;
                            end
                        end else begin
                            ox <= ox + 1'b1;
                            pix_base <= pix_base + SW * CF;
                        end
                    end else begin
                        ky <= ky + 1'b1;
                    end
                end else begin
                    koff <= koff + 1'b1;
                end
            end
        end
    end
endmodule
